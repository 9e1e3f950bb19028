"""The audit chains' verification, as evidence: each tenant's chain checked by the audit
log itself, and the result kept as plain data.

Its own module because it is the one input the pack produces rather than reads: it calls
into the audit log (through :class:`ChainVerifier`), which the other inputs never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tenancy.audit import VerifyResult


class ChainVerifier(Protocol):
    """Anything that verifies one tenant's audit chain (``AuditLog`` does)."""

    def verify(self, tenant_id: str) -> VerifyResult:
        """Verify the tenant's chain: records, hashes and the signed head."""


@dataclass(frozen=True, slots=True)
class ChainResult:
    """One audit chain's verification: ``position`` and ``damage`` name the first fault."""

    tenant: str
    tenant_id: str
    ok: bool
    records: int
    position: int | None = None
    damage: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The result as it appears in ``evidence.json``."""
        return {
            "tenant": self.tenant,
            "tenant_id": self.tenant_id,
            "ok": self.ok,
            "records": self.records,
            "position": self.position,
            "damage": self.damage,
            "detail": self.detail,
        }


def verify_chains(log: ChainVerifier, chains: Iterable[tuple[str, str]]) -> list[ChainResult]:
    """Verify each ``(label, tenant_id)`` chain with ``log`` (an ``AuditLog``)."""
    results = []
    for label, tenant_id in chains:
        found = log.verify(tenant_id)
        results.append(
            ChainResult(
                label,
                tenant_id,
                found.ok,
                found.records,
                found.position,
                None if found.damage is None else str(found.damage),
                found.detail,
            )
        )
    return results
