"""Role bindings shared by every replica: a subject's roles in a tenant, from the database.

``tenancy_role_bindings`` backs :class:`tenancy.authz.RoleBindings` (``tenancy authz roles
bind|unbind|release``). Tenant-owned: forced RLS; the application role reads and changes
its tenant's bindings inside a tenant transaction.

Revision ID: 0008
"""

from __future__ import annotations

from alembic import context, op

from tenancy.authz.roles import ROLE_BINDING_PRIVILEGES, role_bindings_table
from tenancy.scoping.rls import grant_statements, rls_statements

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    role_bindings_table.create(op.get_bind())
    dialect = op.get_context().dialect
    if dialect.name != "postgresql":
        return
    app_role = context.config.attributes.get("app_role")
    if not app_role:
        raise RuntimeError("PostgreSQL migrations need the application role name (app_role)")
    statements = [
        *rls_statements(role_bindings_table, dialect),
        *grant_statements(
            app_role, [role_bindings_table], dialect, privileges=ROLE_BINDING_PRIVILEGES
        ),
    ]
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    role_bindings_table.drop(op.get_bind())
