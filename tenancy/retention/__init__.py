"""Retention: declarative rules per data class, the purge job, and erasure.

- :mod:`tenancy.retention.rules`: ``RetentionRule`` and the defaults (exports 12 days
  after export, identity mappings 14 days after first notification);
- :mod:`tenancy.retention.job`: ``RetentionJob``, idempotent and resumable, audited as
  ``retention.purged`` per tenant and data class;
- :mod:`tenancy.retention.erasure`: a tenant's right-to-erasure request;
- :mod:`tenancy.retention.model`: ``IdentityMapping``, the example second data class.
"""

from tenancy.retention.erasure import (
    DEFAULT_ERASURE_TABLES,
    ErasureReport,
    erase_tenant_personal_data,
)
from tenancy.retention.job import RetentionJob, RetentionReport
from tenancy.retention.model import MAPPINGS_TABLE, IdentityMapping, create_schema
from tenancy.retention.rules import (
    DEFAULT_RULES,
    EXPORTS_KEEP,
    EXPORTS_RULE,
    MAPPINGS_KEEP,
    MAPPINGS_RULE,
    RetentionRule,
)

__all__ = [
    "DEFAULT_ERASURE_TABLES",
    "DEFAULT_RULES",
    "EXPORTS_KEEP",
    "EXPORTS_RULE",
    "MAPPINGS_KEEP",
    "MAPPINGS_RULE",
    "MAPPINGS_TABLE",
    "ErasureReport",
    "IdentityMapping",
    "RetentionJob",
    "RetentionReport",
    "RetentionRule",
    "create_schema",
    "erase_tenant_personal_data",
]
