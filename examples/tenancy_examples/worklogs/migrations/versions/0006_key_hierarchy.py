"""Key hierarchy: the customer's key wraps on top of the platform KEK; per-tenant TTL.

``tenancy_tenant_keks`` gains the customer's key (CMK tenants), the tenant's data-key
cache TTL and the KEK versions waiting for destruction after a rotation;
``tenancy_data_keys`` gains the customer key (and version) that wrapped each data key's
outer layer. Existing rows keep NULLs: platform-only tenants need nothing else.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenancy_tenant_keks", sa.Column("cmk_provider", sa.String(32)))
    op.add_column("tenancy_tenant_keks", sa.Column("cmk_key_id", sa.String(512)))
    op.add_column("tenancy_tenant_keks", sa.Column("cache_ttl", sa.Float))
    op.add_column("tenancy_tenant_keks", sa.Column("retiring", sa.Text))
    op.add_column("tenancy_data_keys", sa.Column("cmk_provider", sa.String(32)))
    op.add_column("tenancy_data_keys", sa.Column("cmk_key_id", sa.String(512)))
    op.add_column("tenancy_data_keys", sa.Column("cmk_version", sa.String(128)))


def downgrade() -> None:
    for column in ("cmk_version", "cmk_key_id", "cmk_provider"):
        op.drop_column("tenancy_data_keys", column)
    for column in ("retiring", "cache_ttl", "cmk_key_id", "cmk_provider"):
        op.drop_column("tenancy_tenant_keks", column)
