"""Audit log: append-only, per-tenant, hash-chained, with an HMAC-signed chain head.

``AuditLog`` is an ``EventSink``: give it to the middleware, the registry, the key
service and support access as ``events=``. See :mod:`tenancy.audit.log` for what
"committed" means, :mod:`tenancy.audit.record` for the record format and
:mod:`tenancy.audit.verify` for what verification reports.
"""

from tenancy.audit.keyfile import ENV_VAR, load_audit_key, write_audit_key
from tenancy.audit.log import AuditLog, chain_of
from tenancy.audit.record import GENESIS_HASH, PLATFORM_CHAIN, AuditRecord
from tenancy.audit.store import TABLES, audit_events, audit_heads, metadata
from tenancy.audit.verify import Damage, VerifyResult, verify_chain
from tenancy.errors import AuditWriteError

__all__ = [
    "ENV_VAR",
    "GENESIS_HASH",
    "PLATFORM_CHAIN",
    "TABLES",
    "AuditLog",
    "AuditRecord",
    "AuditWriteError",
    "Damage",
    "VerifyResult",
    "audit_events",
    "audit_heads",
    "chain_of",
    "load_audit_key",
    "metadata",
    "verify_chain",
    "write_audit_key",
]
