"""The context-token replay guard shared by replicas: one row per token id until it expires.

``tenancy_replay_jti`` backs :class:`tenancy.propagation.TableReplayGuard`
(``TENANCY_REPLAY_GUARD=database``). Not tenant-owned (a token id names no tenant's data):
no RLS; the application role records, takes over expired rows and prunes.

Revision ID: 0007
"""

from __future__ import annotations

from alembic import context, op

from tenancy.propagation.replay_table import REPLAY_PRIVILEGES, replay_table
from tenancy.scoping.rls import grant_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    replay_table.create(op.get_bind())
    dialect = op.get_context().dialect
    if dialect.name != "postgresql":
        return
    app_role = context.config.attributes.get("app_role")
    if not app_role:
        raise RuntimeError("PostgreSQL migrations need the application role name (app_role)")
    for statement in grant_statements(
        app_role, [replay_table], dialect, privileges=REPLAY_PRIVILEGES
    ):
        op.execute(statement)


def downgrade() -> None:
    replay_table.drop(op.get_bind())
