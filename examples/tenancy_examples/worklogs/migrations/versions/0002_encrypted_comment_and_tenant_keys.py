"""Encrypted worklog comments; per-tenant key tables under forced RLS, DML for the app.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tenancy.scoping.rls import migration_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("worklogs", sa.Column("comment", sa.LargeBinary, nullable=True))
    keks = op.create_table(
        "tenancy_tenant_keks",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(512), nullable=False),
        sa.Column("managed_by", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    data_keys = op.create_table(
        "tenancy_data_keys",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("kek_provider", sa.String(32), nullable=False),
        sa.Column("kek_id", sa.String(512), nullable=False),
        sa.Column("kek_version", sa.String(32)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "purpose", "version"),
    )
    app_role = context.config.attributes.get("app_role")
    for statement in migration_statements((keks, data_keys), op.get_context().dialect, app_role):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("tenancy_data_keys")
    op.drop_table("tenancy_tenant_keks")
    op.drop_column("worklogs", "comment")
