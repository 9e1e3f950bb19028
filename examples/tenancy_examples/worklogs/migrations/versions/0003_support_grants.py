"""Support grants and their trail, tenant-owned, under forced RLS; DML for the app.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tenancy.scoping.rls import migration_statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    grants = op.create_table(
        "tenancy_support_grants",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("engineer", sa.String(255), nullable=False),
        sa.Column("engineer_issuer", sa.String(512), nullable=False),
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("justification", sa.Text, nullable=False),
        sa.Column("requested_scopes", sa.Text, nullable=False),
        sa.Column("requested_seconds", sa.Float, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(255)),
        sa.Column("ticket_closed_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.String(255)),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    trail = op.create_table(
        "tenancy_support_trail",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("grant_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "grant_id", "seq"),
    )
    app_role = context.config.attributes.get("app_role")
    for statement in migration_statements((grants, trail), op.get_context().dialect, app_role):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("tenancy_support_trail")
    op.drop_table("tenancy_support_grants")
