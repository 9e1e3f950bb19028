"""Exports and identity mappings (retention data classes) and the tenants' data
contribution settings, tenant-owned, under forced RLS; DML for the app.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tenancy.scoping.rls import migration_statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    exports = op.create_table(
        "tenancy_exports",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),  # sealed (tenancy.keys)
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index("ix_tenancy_exports_created", "tenancy_exports", ["tenant_id", "created_at"])
    mappings = op.create_table(
        "tenancy_identity_mappings",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_notified_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint(
            "tenant_id", "external_id", name="uq_tenancy_identity_mappings_external"
        ),
    )
    op.create_index(
        "ix_tenancy_identity_mappings_notified",
        "tenancy_identity_mappings",
        ["tenant_id", "first_notified_at"],
    )
    contribution = op.create_table(
        "tenancy_contribution_settings",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(255), nullable=False),
    )
    app_role = context.config.attributes.get("app_role")
    for statement in migration_statements(
        (exports, mappings, contribution), op.get_context().dialect, app_role
    ):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("tenancy_contribution_settings")
    op.drop_index("ix_tenancy_identity_mappings_notified", "tenancy_identity_mappings")
    op.drop_table("tenancy_identity_mappings")
    op.drop_index("ix_tenancy_exports_created", "tenancy_exports")
    op.drop_table("tenancy_exports")
