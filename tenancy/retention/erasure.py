"""A tenant's right-to-erasure request: delete its personal data, then shred its keys.

What is deleted: **whole rows** of the tenant in every table given (by default the
library's identity mappings and exports; the application adds its own, e.g. the
worklogs table). Worklog rows are deleted whole rather than blanked column by column:
author, description and comment are all personal, and what would remain (minutes per
day of an anonymous row) is of no use to anyone and could still single a person out.

Then the tenant's keys are shredded (:meth:`TenantKeys.shred`): whatever ciphertext
survives anywhere (backups, replicas, a table not listed) can never be read again.

Idempotent and resumable: each table is one transaction for that tenant (RLS applies on
PostgreSQL), deletion comes before shredding, and a rerun deletes nothing more and
accepts keys that are already destroyed. Erasure does not change the tenant's status in
the registry: offboard it there (its encrypted data is unreadable from now on).
One ``erasure.completed`` event carries the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, Table, delete

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import current_or_none
from tenancy.errors import (
    ConfigurationError,
    KeyDestroyed,
    KeyUnavailable,
    TenantContextConflict,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.exports.model import ExportRecord
from tenancy.keys import TenantKeys
from tenancy.retention.model import IdentityMapping
from tenancy.scoping.rls import tenant_transaction

KeysOutcome = Literal["shredded", "already-destroyed", "none"]


def _table(model: type[object]) -> Table:
    table = getattr(model, "__table__", None)
    assert isinstance(table, Table)
    return table


DEFAULT_ERASURE_TABLES: tuple[Table, ...] = (_table(IdentityMapping), _table(ExportRecord))


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """Rows deleted per table, and what happened to the keys."""

    tenant_id: str
    deleted: dict[str, int]
    keys: KeysOutcome

    @property
    def total(self) -> int:
        """The number of rows deleted across every table."""
        return sum(self.deleted.values())


def erase_tenant_personal_data(
    tenant_id: str,
    *,
    engine: Engine,
    keys: TenantKeys,
    tables: Sequence[Table] = DEFAULT_ERASURE_TABLES,
    events: EventSink | None = None,
    clock: Clock = SYSTEM_CLOCK,
    requested_by: str | None = None,
) -> ErasureReport:
    """Delete every row of ``tenant_id`` in ``tables`` and shred the tenant's keys.

    Raises:
        TenantContextConflict: a context for another tenant is bound.
        ConfigurationError: a table is not tenant-owned (nothing is deleted).
        KeyUnavailable: the key provider could not destroy the key (rows are deleted
            already; run again to finish).
    """
    ctx = current_or_none()
    if ctx is not None and ctx.tenant_id != tenant_id:
        raise TenantContextConflict("erasure of another tenant than the bound one")
    for table in tables:
        if "tenant_id" not in table.c:
            raise ConfigurationError(f"{table.name} has no tenant_id column")
    deleted: dict[str, int] = {}
    for table in tables:
        with tenant_transaction(engine, tenant_id) as conn:
            done = conn.execute(delete(table).where(table.c.tenant_id == tenant_id))
            deleted[table.name] = max(done.rowcount, 0)
    outcome: KeysOutcome
    try:
        keys.shred(tenant_id)
        outcome = "shredded"
    except KeyDestroyed:
        outcome = "already-destroyed"
    except KeyUnavailable:
        if keys.status(tenant_id).kek is not None:
            raise  # the provider failed: the key still exists
        outcome = "none"
    details = {f"deleted.{name}": str(count) for name, count in deleted.items()}
    details["keys"] = outcome
    actor = requested_by or (None if ctx is None else ctx.principal.subject)
    (events if events is not None else LoggingSink()).emit(
        SecurityEvent(
            action="erasure.completed",
            at=clock.now(),
            tenant_id=tenant_id,
            actor=actor,
            reason="right-to-erasure",
            request_id=None if ctx is None else ctx.request_id,
            details=details,
        )
    )
    return ErasureReport(tenant_id, deleted, outcome)
