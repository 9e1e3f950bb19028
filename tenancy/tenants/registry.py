"""The tenant registry: provisioning and lifecycle, stored with SQLAlchemy.

Works on SQLite and PostgreSQL. Reads go through a small in-process cache that is
invalidated when this process changes a tenant, and expires after ``cache_ttl``. With a
``signal`` (the key-state signal's protocol: ``SharedKeyState`` for the processes of one
host, ``RedisKeyState`` across hosts), a change made by any process (the CLI suspending a
tenant) bumps the tenant's generation, and every process's very next lookup reads the
row again; without one, other processes see it within ``cache_ttl``.
Every change is emitted as a :class:`~tenancy.events.SecurityEvent`.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from tenancy.clock import SYSTEM_CLOCK, Clock, as_utc
from tenancy.errors import ConfigurationError, DuplicateSlug, UnknownTenant
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.tenants.model import (
    Tenant,
    TenantStatus,
    check_transition,
    validate_display_name,
    validate_region,
    validate_slug,
)

if TYPE_CHECKING:
    from tenancy.keys.state import KeyStateSignal

metadata = MetaData()

tenants_table = Table(
    "tenancy_tenants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("slug", String(32), nullable=False, unique=True),
    Column("display_name", String(120), nullable=False),
    Column("region", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "status IN ('active', 'suspended', 'offboarded')", name="tenancy_tenants_status"
    ),
)

_EVENT_FOR_STATUS = {
    TenantStatus.ACTIVE: "tenant.activated",
    TenantStatus.SUSPENDED: "tenant.suspended",
    TenantStatus.OFFBOARDED: "tenant.offboarded",
}


class TenantRegistry:
    """Creates tenants, moves them through their lifecycle, and resolves them fast."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventSink | None = None,
        cache_ttl: float = 5.0,
        signal: KeyStateSignal | None = None,
    ) -> None:
        if cache_ttl < 0:
            raise ConfigurationError("cache_ttl must be >= 0")
        self._signal = signal
        self._engine = engine
        self._clock = clock
        self._events = events if events is not None else LoggingSink()
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, int, Tenant]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the signal (a Redis listener thread, a mapped file); the engine stays
        the caller's. ``open_registry`` made the signal, so its registry owns it."""
        close = getattr(self._signal, "close", None)
        if close is not None:
            close()

    def create_schema(self) -> None:
        """Create the registry table if absent (production uses migrations instead)."""
        metadata.create_all(self._engine)

    # -- reads ----------------------------------------------------------------------

    def peek(self, tenant_id: str, *, now: float | None = None) -> Tenant | None:
        """The cached tenant, if fresh; never does I/O (safe on the event loop)."""
        entry = self._cache.get(tenant_id)
        if entry is None:
            return None
        loaded_at, generation, tenant = entry
        if (self._clock.timestamp() if now is None else now) - loaded_at >= self._ttl:
            return None
        if self._signal is not None and self._signal.generation(tenant_id) != generation:
            return None  # changed by another process since it was loaded
        return tenant

    def get(self, tenant_id: str) -> Tenant:
        """Return the tenant with this id.

        Raises:
            UnknownTenant: no such tenant.
        """
        cached = self.peek(tenant_id)
        if cached is not None:
            return cached
        # The generation is read before the row: a change committed in between bumps it
        # after, so this entry is already stale and the next peek reads again.
        generation = self._signal.generation(tenant_id) if self._signal is not None else 0
        tenant = self._load(tenants_table.c.id == tenant_id)
        with self._lock:
            self._cache[tenant.id] = (self._clock.timestamp(), generation, tenant)
        return tenant

    def get_by_slug(self, slug: str) -> Tenant:
        """Return the tenant with this slug (not cached: slugs are for admin paths).

        Raises:
            UnknownTenant: no such tenant.
        """
        return self._load(tenants_table.c.slug == slug)

    def list(self, *, status: TenantStatus | None = None) -> list[Tenant]:
        """Every tenant, or those with ``status``, ordered by slug; read from the database
        (not the cache)."""
        query = select(tenants_table).order_by(tenants_table.c.slug)
        if status is not None:
            query = query.where(tenants_table.c.status == status.value)
        with self._engine.connect() as conn:
            return [_to_tenant(row) for row in conn.execute(query)]

    # -- writes ---------------------------------------------------------------------

    def provision(
        self, slug: str, *, region: str, display_name: str | None = None, actor: str = "system"
    ) -> Tenant:
        """Create an active tenant with a fresh UUID.

        Raises:
            InvalidTenantField: slug, region or display name break the rules.
            DuplicateSlug: the slug is taken.
        """
        now = self._clock.now()
        tenant = Tenant(
            id=str(uuid.uuid4()),
            slug=validate_slug(slug),
            display_name=validate_display_name(display_name or slug),
            region=validate_region(region),
            status=TenantStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(tenants_table).values(
                        id=tenant.id,
                        slug=tenant.slug,
                        display_name=tenant.display_name,
                        region=tenant.region,
                        status=tenant.status.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise DuplicateSlug(f"slug {slug!r} is already taken") from exc
        self._emit("tenant.provisioned", tenant, actor=actor, reason=None)
        return tenant

    def ensure(self, slug: str, *, region: str, display_name: str | None = None) -> Tenant:
        """Return the tenant with ``slug``, provisioning it if absent (for demos and seeds)."""
        try:
            return self.get_by_slug(slug)
        except UnknownTenant:
            return self.provision(slug, region=region, display_name=display_name)

    def suspend(self, tenant_id: str, *, actor: str, reason: str) -> Tenant:
        """Suspend the tenant: its requests are refused (``TenantSuspended``) in this
        process at once, in others once their cache entry expires (``cache_ttl``).
        Reversible with ``activate``. Emits ``tenant.suspended`` with ``actor`` and
        ``reason``.

        Raises:
            UnknownTenant: no such tenant.
            InvalidTransition: the tenant is not active.
            ValueError: ``reason`` is blank.
        """
        return self._move(tenant_id, TenantStatus.SUSPENDED, actor=actor, reason=reason)

    def activate(self, tenant_id: str, *, actor: str, reason: str) -> Tenant:
        """Make a suspended tenant active again; emits ``tenant.activated``.

        Raises:
            UnknownTenant: no such tenant.
            InvalidTransition: the tenant is not suspended (an offboarded tenant stays so).
            ValueError: ``reason`` is blank.
        """
        return self._move(tenant_id, TenantStatus.ACTIVE, actor=actor, reason=reason)

    def offboard(self, tenant_id: str, *, actor: str, reason: str) -> Tenant:
        """Offboard the tenant, for good: no move leaves ``offboarded``. Emits
        ``tenant.offboarded``. It changes the status only; erasing the tenant's data and
        keys is done elsewhere.

        Raises:
            UnknownTenant: no such tenant.
            InvalidTransition: the tenant is already offboarded.
            ValueError: ``reason`` is blank.
        """
        return self._move(tenant_id, TenantStatus.OFFBOARDED, actor=actor, reason=reason)

    def _move(self, tenant_id: str, target: TenantStatus, *, actor: str, reason: str) -> Tenant:
        if not reason.strip():
            raise ValueError("a lifecycle change needs a reason")
        current = self._load(tenants_table.c.id == tenant_id)
        check_transition(current.status, target)
        now = self._clock.now()
        with self._engine.begin() as conn:
            # Compare-and-set on the status we checked, so two concurrent moves cannot
            # both succeed from the same starting point.
            result = conn.execute(
                update(tenants_table)
                .where(tenants_table.c.id == tenant_id)
                .where(tenants_table.c.status == current.status.value)
                .values(status=target.value, updated_at=now)
            )
        self._invalidate(tenant_id)
        if result.rowcount != 1:
            latest = self._load(tenants_table.c.id == tenant_id)
            check_transition(latest.status, target)
            return self._move(tenant_id, target, actor=actor, reason=reason)
        moved = self._load(tenants_table.c.id == tenant_id)
        self._emit(_EVENT_FOR_STATUS[target], moved, actor=actor, reason=reason)
        return moved

    # -- internals ------------------------------------------------------------------

    def _load(self, where: object) -> Tenant:
        with self._engine.connect() as conn:
            row = conn.execute(select(tenants_table).where(where)).first()  # type: ignore[arg-type]
        if row is None:
            raise UnknownTenant("no such tenant")
        return _to_tenant(row)

    def _invalidate(self, tenant_id: str) -> None:
        with self._lock:
            self._cache.pop(tenant_id, None)
        if self._signal is not None:
            self._signal.changed(tenant_id)  # every process's next lookup reads again

    def _emit(self, action: str, tenant: Tenant, *, actor: str, reason: str | None) -> None:
        self._events.emit(
            SecurityEvent(
                action=action,
                at=self._clock.now(),
                tenant_id=tenant.id,
                actor=actor,
                reason=reason,
                details={
                    "slug": tenant.slug,
                    "region": tenant.region,
                    "status": tenant.status.value,
                },
            )
        )


def _to_tenant(row: Row[tuple[object, ...]]) -> Tenant:
    m = row._mapping
    return Tenant(
        id=str(m["id"]),
        slug=str(m["slug"]),
        display_name=str(m["display_name"]),
        region=str(m["region"]),
        status=TenantStatus(m["status"]),
        created_at=_utc(m["created_at"]),
        updated_at=_utc(m["updated_at"]),
    )


def _utc(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError("expected a datetime from the database")
    return as_utc(value)
