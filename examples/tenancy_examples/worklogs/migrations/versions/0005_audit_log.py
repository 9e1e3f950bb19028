"""Audit log: hash-chained events and HMAC-signed chain heads, tenant-owned, forced RLS.

The application role may only read and append events (no UPDATE or DELETE on them), and
update the chain heads it signs with a key that is not in the database.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tenancy.scoping.rls import grant_statements, rls_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    events = op.create_table(
        "tenancy_audit_events",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("v", sa.Integer, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq"),
    )
    heads = op.create_table(
        "tenancy_audit_heads",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    dialect = op.get_context().dialect
    if dialect.name != "postgresql":
        return
    app_role = context.config.attributes.get("app_role")
    if not app_role:
        raise RuntimeError("PostgreSQL migrations need the application role name (app_role)")
    statements = [
        *rls_statements(events, dialect),
        *rls_statements(heads, dialect),
        *grant_statements(app_role, [events], dialect, privileges="SELECT, INSERT"),
        *grant_statements(app_role, [heads], dialect, privileges="SELECT, INSERT, UPDATE"),
    ]
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("tenancy_audit_heads")
    op.drop_table("tenancy_audit_events")
