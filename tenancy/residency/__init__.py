"""Data residency: a tenant's data and keys stay in its home region.

- :class:`RegionalEngines`: region → engine, handing out only the engine of the bound
  tenant's home region, and only on an instance of that region;
- :class:`RegionalSessions`: ``TenantSession``s routed per tenant, and ``for_job`` for
  jobs;
- :func:`check_key_region` / :class:`KeyResidency`: a tenant's KEK lives in its region.

Every refusal is a :class:`ResidencyViolation` (a ``WrongRegion``: 403 ``wrong-region``)
and a ``residency.refused`` security event.
"""

from tenancy.errors import ResidencyViolation
from tenancy.residency.audit import REFUSED
from tenancy.residency.engines import RegionalEngines, RegionalSessions
from tenancy.residency.keys import KeyResidency, check_key_region, key_region

__all__ = [
    "REFUSED",
    "KeyResidency",
    "RegionalEngines",
    "RegionalSessions",
    "ResidencyViolation",
    "check_key_region",
    "key_region",
]
