"""The purge job behind ``tenancy retention run``.

For every rule and tenant, due rows are deleted in batches, each batch its own
transaction for that tenant (:func:`tenancy.scoping.rls.tenant_transaction`, so on
PostgreSQL the tenant's RLS setting applies and a batch can only ever touch that
tenant's rows). The whole run is inside :func:`system_scope` (``"retention"``), which is
audited. The data itself is the checkpoint, so no progress table is needed:

- resumable: a crash between batches leaves every committed batch deleted and every
  other row untouched; the next run selects what is still due and continues;
- idempotent: a batch re-checks the rule in its ``DELETE``, so rows deleted already (by
  a previous or concurrent run) are not counted again, and a second run at the same
  time deletes nothing.

One ``retention.purged`` event per tenant and data class carries the counts
(``deleted``, ``batches``, ``cutoff``, ``complete``); a run that fails part way still
emits what it deleted for the tenant and class it was on (``complete=false``), then
raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, delete, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import ConfigurationError
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.retention.rules import DEFAULT_RULES, RetentionRule
from tenancy.scoping import system_scope
from tenancy.scoping.rls import tenant_transaction

ACTOR = "tenancy-retention"
REASON = "retention"
AfterBatch = Callable[[str, str, int], None]


@dataclass(slots=True)
class RetentionReport:
    """What a run deleted: ``counts[(tenant_id, data_class)]``, zeros included."""

    started_at: datetime
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """The number of rows deleted in the run, across tenants and data classes."""
        return sum(self.counts.values())

    def deleted(self, data_class: str, tenant_id: str | None = None) -> int:
        """The rows of ``data_class`` deleted in the run, for one tenant or (``tenant_id``
        None) for all."""
        return sum(
            n
            for (tenant, cls), n in self.counts.items()
            if cls == data_class and tenant_id in (None, tenant)
        )


class RetentionJob:
    """Delete what is due under ``rules``.

    Args:
        engine: the database holding the rules' tables.
        rules: what to keep and for how long (default: :data:`DEFAULT_RULES`).
        tenants: returns the tenant ids to purge, e.g.
            ``lambda: [t.id for t in registry.list()]``. Without it the tenants are read
            from each table (``SELECT DISTINCT tenant_id``), which under forced RLS on
            PostgreSQL sees nothing unless the job connects as a role that bypasses RLS:
            pass the registry there.
        batch_size: rows per transaction.
        after_batch: called with (tenant id, data class, rows deleted) after each batch
            commits; for progress reporting (and tests inject failures here).
    """

    def __init__(
        self,
        engine: Engine,
        rules: Sequence[RetentionRule] = DEFAULT_RULES,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventSink | None = None,
        batch_size: int = 500,
        tenants: Callable[[], Iterable[str]] | None = None,
        after_batch: AfterBatch | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        names = [r.data_class for r in rules]
        if len(set(names)) != len(names):
            raise ConfigurationError("two retention rules for the same data class")
        self._engine = engine
        self._rules = tuple(rules)
        self._clock = clock
        self._events = events if events is not None else LoggingSink()
        self._batch_size = batch_size
        self._tenants = tenants
        self._after_batch = after_batch

    def run(self) -> RetentionReport:
        """Purge everything due now; see the module docs for the guarantees."""
        now = self._clock.now()
        report = RetentionReport(started_at=now)
        with system_scope(REASON, events=self._events):
            listed = None if self._tenants is None else sorted(set(self._tenants()))
            for rule in self._rules:
                cutoff = rule.cutoff(now)
                tenant_ids = listed if listed is not None else self._tenants_of(rule, cutoff)
                for tenant_id in tenant_ids:
                    report.counts[(tenant_id, rule.data_class)] = self._purge(
                        rule, tenant_id, cutoff
                    )
        return report

    def _purge(self, rule: RetentionRule, tenant_id: str, cutoff: datetime) -> int:
        deleted = batches = 0
        complete = False
        try:
            while True:
                with tenant_transaction(self._engine, tenant_id) as conn:
                    due = _due(rule, tenant_id, cutoff)
                    keys = conn.execute(
                        select(*rule.row_key)
                        .where(due)
                        .order_by(rule.timestamp, *rule.row_key)
                        .limit(self._batch_size)
                    ).all()
                    if not keys:
                        complete = True
                        break
                    done = conn.execute(delete(rule.table).where(due, _one_of(rule, keys)))
                    count = max(done.rowcount, 0)
                deleted += count
                batches += 1
                if self._after_batch is not None:
                    self._after_batch(tenant_id, rule.data_class, count)
                if count == 0:
                    break  # deleted meanwhile by another run: leave the rest to it (or the next)
                if len(keys) < self._batch_size:
                    complete = True
                    break
        finally:
            self._events.emit(
                SecurityEvent(
                    action="retention.purged",
                    at=self._clock.now(),
                    tenant_id=tenant_id,
                    actor=ACTOR,
                    reason=REASON,
                    details={
                        "data_class": rule.data_class,
                        "table": rule.table.name,
                        "deleted": str(deleted),
                        "batches": str(batches),
                        "cutoff": cutoff.isoformat(),
                        "complete": "true" if complete else "false",
                    },
                )
            )
        return deleted

    def _tenants_of(self, rule: RetentionRule, cutoff: datetime) -> list[str]:
        tenant_id = rule.table.c.tenant_id
        with self._engine.connect() as conn:
            found = conn.execute(
                select(tenant_id).distinct().where(rule.timestamp <= cutoff).order_by(tenant_id)
            )
            return [str(t) for t in found.scalars()]


def _due(rule: RetentionRule, tenant_id: str, cutoff: datetime) -> ColumnElement[bool]:
    # The tenant is named explicitly as well as by RLS: SQLite has no RLS.
    return (rule.table.c.tenant_id == tenant_id) & (rule.timestamp <= cutoff)


def _one_of(rule: RetentionRule, keys: Sequence[Sequence[object]]) -> ColumnElement[bool]:
    if len(rule.row_key) == 1:
        return rule.row_key[0].in_([k[0] for k in keys])
    return tuple_(*rule.row_key).in_([tuple(k) for k in keys])
