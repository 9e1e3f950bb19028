"""tenancy: multi-tenant isolation for Python services.

The tenant comes from verified credentials only, and everything fails closed.
"""

from tenancy.clock import Clock, FrozenClock, SystemClock
from tenancy.context import (
    Assurance,
    Principal,
    PrincipalKind,
    TenantContext,
    bind,
    current,
    current_or_none,
    require_scope,
    run_in_context,
    run_in_executor,
    wrap,
)
from tenancy.middleware import TenancyMiddleware

__version__ = "0.1.0"

__all__ = [
    "Assurance",
    "Clock",
    "FrozenClock",
    "Principal",
    "PrincipalKind",
    "SystemClock",
    "TenancyMiddleware",
    "TenantContext",
    "__version__",
    "bind",
    "current",
    "current_or_none",
    "require_scope",
    "run_in_context",
    "run_in_executor",
    "wrap",
]
