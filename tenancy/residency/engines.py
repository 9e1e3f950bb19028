"""Route a tenant's sessions to the database of its home region, or refuse.

Each service instance is configured with its own region and with one SQLAlchemy engine
per region (``RegionalEngines``). A tenant's data is read and written only through the
engine of the tenant's home region, and only by an instance of that region: anything
else is a :class:`~tenancy.errors.ResidencyViolation` (403 ``wrong-region``)
and a ``residency.refused`` security event naming the tenant, its home region, this
instance's region and what was attempted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from sqlalchemy import Engine

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import TenantContext, current, current_or_none
from tenancy.errors import ConfigurationError, InvalidTenantField, TenantContextConflict
from tenancy.events import EventSink, LoggingSink
from tenancy.residency.audit import refuse
from tenancy.scoping.orm import TenantSession, pin_session
from tenancy.tenants.model import Tenant, validate_region

Homed = Tenant | TenantContext
"""Anything that names a tenant and its home region: a registry ``Tenant`` or the bound
``TenantContext`` (whose ``region`` is the tenant's home region)."""


def _identity(tenant: Homed) -> tuple[str, str]:
    if isinstance(tenant, Tenant):
        return tenant.id, tenant.region
    if isinstance(tenant, TenantContext):
        return tenant.tenant_id, tenant.region
    raise TypeError("expected a Tenant or a TenantContext")


def _region(value: str, what: str) -> str:
    try:
        return validate_region(value)
    except InvalidTenantField as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc


class RegionalEngines(Mapping[str, Engine]):
    """The engines of every region (region → ``Engine``) and the region of this instance.

    Read a tenant's data only through :meth:`engine_for` / :meth:`engine_for_current`:
    they hand out the engine of the tenant's home region, and refuse (with an event)
    when this instance serves another region or has no engine for it. The mapping view
    is configuration (for start-up checks and ``dispose``), not a way to reach data.

    Raises:
        ConfigurationError: no engines, a malformed region, a value that is not an
            ``Engine``, or one database configured for two regions.
    """

    def __init__(
        self,
        engines: Mapping[str, Engine],
        *,
        region: str,
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not engines:
            raise ConfigurationError("RegionalEngines needs at least one engine")
        checked: dict[str, Engine] = {}
        seen: dict[object, str] = {}
        for name, engine in engines.items():
            key = _region(name, "engine region")
            if not isinstance(engine, Engine):
                raise ConfigurationError(f"the engine for {key} is not a SQLAlchemy Engine")
            for ident in _identities(engine):
                if ident in seen:
                    raise ConfigurationError(
                        f"one database is configured for {seen[ident]} and {key}"
                    )
                seen[ident] = key
            checked[key] = engine
        self._engines = checked
        self._region = _region(region, "instance region")
        self._events = events if events is not None else LoggingSink()
        self._clock = clock

    @property
    def region(self) -> str:
        """The region this service instance runs in."""
        return self._region

    @property
    def events(self) -> EventSink:
        """Where ``residency.refused`` events go."""
        return self._events

    @property
    def clock(self) -> Clock:
        """The clock that stamps ``residency.refused`` events."""
        return self._clock

    def __getitem__(self, region: str) -> Engine:
        return self._engines[region]

    def __iter__(self) -> Iterator[str]:
        return iter(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def engine_for(self, tenant: Homed, *, attempted: str = "session") -> Engine:
        """The engine of ``tenant``'s home region.

        Raises:
            ResidencyViolation: the tenant is homed in another region than this
                instance, or no engine is configured for its region (event emitted).
        """
        tenant_id, home = _identity(tenant)
        if home != self._region:
            self.refuse(
                tenant_id,
                home,
                attempted=attempted,
                reason="tenant is homed in another region than this instance",
            )
        engine = self._engines.get(home)
        if engine is None:
            self.refuse(
                tenant_id,
                home,
                attempted=attempted,
                reason="no database engine for the tenant's home region",
            )
        return engine

    def engine_for_current(self, *, attempted: str = "session") -> Engine:
        """The engine of the bound tenant's home region (see :meth:`engine_for`).

        Raises:
            NoTenantContext: no tenant is bound (fail closed).
            ResidencyViolation: as :meth:`engine_for`.
        """
        return self.engine_for(current(), attempted=attempted)

    def local_engine(self) -> Engine:
        """This instance's own engine, for tenant-free work under ``system_scope()``
        (migrations, start-up audits).

        Raises:
            ConfigurationError: no engine is configured for this instance's region.
        """
        engine = self._engines.get(self._region)
        if engine is None:
            raise ConfigurationError(f"no engine is configured for {self._region}")
        return engine

    def refuse(
        self,
        tenant_id: str | None,
        home_region: str | None,
        *,
        attempted: str,
        reason: str,
        **details: str,
    ) -> NoReturn:
        """Emit ``residency.refused`` and raise ``ResidencyViolation`` (never returns)."""
        refuse(
            self._events,
            reason=reason,
            tenant_id=tenant_id,
            home_region=home_region,
            region=self._region,
            attempted=attempted,
            clock=self._clock,
            **details,
        )

    def dispose(self) -> None:
        """Dispose every region's engine (close their pooled connections); engines are
        usable again afterwards, opening new connections on demand."""
        for engine in self._engines.values():
            engine.dispose()


def _identities(engine: Engine) -> tuple[object, ...]:
    """What tells two configured databases apart: the object, and its URL unless the
    URL names no shared database (SQLite in memory is one database per engine)."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return (id(engine),)
    return (id(engine), url.render_as_string(hide_password=True))


class RegionalSessions:
    """A ``sessionmaker``-like factory of ``TenantSession``s routed per tenant.

    ``sessions()`` opens a session on the engine of the bound tenant's home region,
    pinned to that tenant; ``with sessions.begin() as s:`` also commits on success.
    Outside the tenant's region it refuses with ``ResidencyViolation`` and an event.
    """

    def __init__(
        self,
        engines: RegionalEngines,
        *,
        class_: type[TenantSession] = TenantSession,
        **session_kwargs: Any,
    ) -> None:
        if "bind" in session_kwargs or "binds" in session_kwargs:
            raise ConfigurationError("RegionalSessions chooses the engine per tenant")
        if not issubclass(class_, TenantSession):
            raise ConfigurationError("RegionalSessions makes TenantSessions only")
        self.engines = engines
        self._class = class_
        self._kwargs = session_kwargs

    def __call__(self, **local_kwargs: Any) -> TenantSession:
        """A session for the bound tenant, on its home region's engine.

        Raises:
            NoTenantContext: no tenant is bound.
            ResidencyViolation: the tenant is homed elsewhere (event emitted).
        """
        return self._open(current(), "session", local_kwargs)

    @contextmanager
    def begin(self, **local_kwargs: Any) -> Iterator[TenantSession]:
        """A session for the bound tenant in a transaction, committed on success."""
        with self(**local_kwargs) as session, session.begin():
            yield session

    @contextmanager
    def for_job(
        self, tenant: Homed, *, region: str, job: str = "job", **local_kwargs: Any
    ) -> Iterator[TenantSession]:
        """Run a job's work for ``tenant`` in a transaction on its home region's engine.

        ``region`` is where the job runs (the worker's configured region). A tenant
        homed elsewhere is refused before anything is opened, so nothing is read or
        written. The session still scopes by the bound tenant: bind the job's verified
        context (e.g. ``MessageConsumer.consume``) around this block; a context of
        another tenant is refused.

        Raises:
            ResidencyViolation: the tenant is homed in another region (event emitted).
            ConfigurationError: ``region`` is not the region these engines serve.
            TenantContextConflict: a context of another tenant is bound.
        """
        worker = _region(region, "job region")
        tenant_id, home = _identity(tenant)
        attempted = f"job:{job}"
        if home != worker:
            refuse(
                self.engines.events,
                reason="job for a tenant homed in another region",
                tenant_id=tenant_id,
                home_region=home,
                region=worker,
                attempted=attempted,
                clock=self.engines.clock,
            )
        if worker != self.engines.region:
            raise ConfigurationError(f"a job in {worker} with the engines of {self.engines.region}")
        bound = current_or_none()
        if bound is not None and bound.tenant_id != tenant_id:
            raise TenantContextConflict("a job for another tenant than the bound one")
        with self._open(tenant, attempted, local_kwargs) as session, session.begin():
            yield session

    def _open(
        self, tenant: Homed, attempted: str, local_kwargs: Mapping[str, Any]
    ) -> TenantSession:
        engine = self.engines.engine_for(tenant, attempted=attempted)
        session = self._class(bind=engine, **{**self._kwargs, **local_kwargs})
        # Pinned now, not at first use: a session routed for this tenant's region is
        # never used for another tenant.
        pin_session(session, _identity(tenant)[0])
        return session
