"""tenancy: multi-tenant isolation for Python services.

The tenant comes from verified credentials only, and everything fails closed.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from tenancy.middleware import TenancyMiddleware

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The middleware pulls in Starlette, SQLAlchemy and the policy engines; importing it
    # on first use keeps `import tenancy` (and every CLI command) quick.
    if name == "TenancyMiddleware":
        from tenancy.middleware import TenancyMiddleware

        return TenancyMiddleware
    raise AttributeError(f"module 'tenancy' has no attribute {name!r}")


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
