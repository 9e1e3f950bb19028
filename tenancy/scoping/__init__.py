"""Row-level scoping: the ORM layer (this package) and PostgreSQL RLS beneath it."""

from tenancy.scoping.orm import SYSTEM_SCOPE_OPTION, TenantScoped, TenantSession, system_scope

__all__ = ["SYSTEM_SCOPE_OPTION", "TenantScoped", "TenantSession", "system_scope"]
