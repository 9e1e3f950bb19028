"""Each tenant's data-contribution setting, and where it is read from.

The pipeline only asks ``ContributionPolicy.allows(tenant_id)``. A tenant never seen is
not allowed (fail closed). ``MemoryContributionPolicy`` is for tests and tools;
``SqlContributionPolicy`` keeps the setting in ``tenancy_contribution_settings`` (one
row per tenant, ``tenant_id`` first so PostgreSQL RLS applies) and is read on every call,
so turning the setting off takes effect for the next batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Boolean, Column, DateTime, Engine, MetaData, String, Table, select

from tenancy.clock import Clock, SystemClock
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.scoping.rls import tenant_transaction

SETTINGS_TABLE = "tenancy_contribution_settings"


class ContributionPolicy(Protocol):
    """Says whether a tenant allows its data to be contributed. Unknown => False."""

    def allows(self, tenant_id: str) -> bool:
        """True only if ``tenant_id`` explicitly allowed contribution; False for a tenant
        never seen or one that turned it off."""


@dataclass(frozen=True, slots=True)
class ContributionSetting:
    """A tenant's recorded choice about contributing its data: ``allowed``, when it last
    changed and who changed it."""

    tenant_id: str
    allowed: bool
    changed_at: datetime
    changed_by: str


def _changed_event(setting: ContributionSetting) -> SecurityEvent:
    return SecurityEvent(
        action="deid.setting_changed",
        at=setting.changed_at,
        tenant_id=setting.tenant_id,
        actor=setting.changed_by,
        details={"allowed": str(setting.allowed).lower()},
    )


class MemoryContributionPolicy:
    """Settings in memory; for tests, tools and single-process demos."""

    def __init__(
        self,
        allowed: dict[str, bool] | None = None,
        *,
        clock: Clock | None = None,
        events: EventSink | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._events = events or LoggingSink()
        self._lock = threading.Lock()
        now = self._clock.now()
        self._settings = {
            t: ContributionSetting(t, bool(a), now, "initial") for t, a in (allowed or {}).items()
        }

    def set(self, tenant_id: str, allowed: bool, *, by: str) -> ContributionSetting:
        """Record the tenant's choice (replacing any earlier one) and emit
        ``deid.setting_changed``; returns what was stored. It takes effect for the next
        ``allows`` call."""
        setting = ContributionSetting(tenant_id, allowed, self._clock.now(), by)
        with self._lock:
            self._settings[tenant_id] = setting
        self._events.emit(_changed_event(setting))
        return setting

    def setting(self, tenant_id: str) -> ContributionSetting | None:
        """The tenant's current setting, or None if it never set one."""
        with self._lock:
            return self._settings.get(tenant_id)

    def allows(self, tenant_id: str) -> bool:
        """True only if the tenant explicitly allowed contribution; unknown tenants and
        tenants that turned it off are refused (fail closed)."""
        setting = self.setting(tenant_id)
        return setting is not None and setting.allowed is True


metadata = MetaData()

contribution_settings = Table(
    SETTINGS_TABLE,
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("allowed", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(255), nullable=False),
)


class SqlContributionPolicy:
    """Settings in ``tenancy_contribution_settings``; no cache, read per batch."""

    def __init__(
        self, engine: Engine, *, clock: Clock | None = None, events: EventSink | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()
        self._events = events or LoggingSink()

    def create_schema(self) -> None:
        """Create the table (SQLite and tests; PostgreSQL gets it from a migration)."""
        metadata.create_all(self._engine)

    def set(self, tenant_id: str, allowed: bool, *, by: str) -> ContributionSetting:
        """Store the tenant's choice in its own RLS-scoped transaction (insert or replace),
        then emit ``deid.setting_changed``; returns what was stored. The event is emitted
        only after the commit, so a failed write emits nothing."""
        setting = ContributionSetting(tenant_id, allowed, self._clock.now(), by)
        values = {"allowed": allowed, "changed_at": setting.changed_at, "changed_by": by}
        with tenant_transaction(self._engine, tenant_id) as conn:
            updated = conn.execute(
                contribution_settings.update()
                .where(contribution_settings.c.tenant_id == tenant_id)
                .values(**values)
            )
            if updated.rowcount == 0:
                conn.execute(contribution_settings.insert().values(tenant_id=tenant_id, **values))
        self._events.emit(_changed_event(setting))
        return setting

    def setting(self, tenant_id: str) -> ContributionSetting | None:
        """The tenant's current setting read from the database (no cache), or None if it
        never set one. On SQLite ``changed_at`` comes back without a time zone."""
        with tenant_transaction(self._engine, tenant_id) as conn:
            row = conn.execute(
                select(contribution_settings).where(contribution_settings.c.tenant_id == tenant_id)
            ).first()
        if row is None:
            return None
        return ContributionSetting(row.tenant_id, bool(row.allowed), row.changed_at, row.changed_by)

    def allows(self, tenant_id: str) -> bool:
        """True only if the stored setting explicitly allows contribution; a tenant without
        a row is refused (fail closed). Reads the database on every call."""
        setting = self.setting(tenant_id)
        return setting is not None and setting.allowed is True
