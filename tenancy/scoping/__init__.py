"""Row-level scoping: the ORM layer (this package) and PostgreSQL RLS beneath it."""

from tenancy.scoping.asyncio import AsyncTenantSession
from tenancy.scoping.orm import (
    SYSTEM_SCOPE_OPTION,
    TenantScoped,
    TenantSession,
    system_scope,
    tenant_foreign_key,
    tenant_unique,
)

__all__ = [
    "SYSTEM_SCOPE_OPTION",
    "AsyncTenantSession",
    "TenantScoped",
    "TenantSession",
    "system_scope",
    "tenant_foreign_key",
    "tenant_unique",
]
