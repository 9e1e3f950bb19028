"""Tenants: identity, home region, lifecycle, and the registry that stores them."""

from tenancy.tenants.model import (
    ALLOWED_TRANSITIONS,
    Tenant,
    TenantStatus,
    validate_region,
    validate_slug,
)
from tenancy.tenants.registry import TenantRegistry, tenants_table

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Tenant",
    "TenantRegistry",
    "TenantStatus",
    "tenants_table",
    "validate_region",
    "validate_slug",
]
