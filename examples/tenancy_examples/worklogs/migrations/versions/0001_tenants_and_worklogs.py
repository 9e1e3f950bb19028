"""Tenant registry and worklogs; worklogs under forced RLS; DML-only grants to the app.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tenancy.scoping.rls import grant_statements, rls_statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenancy_tenants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("slug", sa.String(32), nullable=False, unique=True),
        sa.Column("display_name", sa.String(120), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'offboarded')", name="tenancy_tenants_status"
        ),
    )
    worklogs = op.create_table(
        "worklogs",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    dialect = op.get_context().dialect
    if dialect.name != "postgresql":
        return
    app_role = context.config.attributes.get("app_role")
    if not app_role:
        raise RuntimeError("PostgreSQL migrations need the application role name (app_role)")
    tenants = sa.Table("tenancy_tenants", sa.MetaData(), sa.Column("id", sa.String))
    for statement in (
        *rls_statements(worklogs, dialect),
        *grant_statements(app_role, [worklogs], dialect),
        *grant_statements(app_role, [tenants], dialect, privileges="SELECT, INSERT, UPDATE"),
    ):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("worklogs")
    op.drop_table("tenancy_tenants")
