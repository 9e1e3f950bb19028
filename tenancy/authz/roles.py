"""Role bindings kept in the database, applied to the policy data of every replica.

The shipped policy takes a principal's roles from ``data.tenancy.role_bindings[tenant]``
when the tenant has an entry there (a subject the entry does not name has no role), and
from the verified token otherwise. :class:`RoleBindings` stores those entries in
``tenancy_role_bindings``, one row per tenant and subject, so every process reads the
same; each change commits, then bumps the tenant's generation in a signal every process
shares (``tenancy.deployment.state_signal(settings, "policy")``: a mapped file on one
host, Redis across hosts). :class:`RoleBindingsRefresher` is what an
:class:`~tenancy.authz.Authorizer` asks before each decision: it remembers the
generation each tenant's bindings were loaded under, and a tenant whose generation moved
(or that was never loaded) is reloaded before anything is decided or served from the
decision cache. A reload that finds the entry changed sets it with ``bundle.set``, which
moves the revision, reloads the engines and empties the decision cache.

What each operation leaves:

- ``bind``: the subject's roles are the ones given; the tenant's roles now come from its
  bindings (every subject not bound has none).
- ``unbind``: the subject keeps a row *without roles*. It does not fall back to the roles
  its token carries, which could be more than its binding gave: once a tenant manages
  its roles in bindings, taking a subject's binding away takes its roles away, also when
  it was the tenant's last binding (the policy's entry becomes ``{"alice": []}``).
- ``release``: every row of the tenant goes, and with it the tenant's entry: its
  principals' roles come from their tokens again (or from the policy data the bundle
  was loaded with, if that names the tenant). A deliberate act, never a side effect.

A tenant's stored rows replace whatever the bundle's own data said for that tenant.
On PostgreSQL the table is tenant-owned (forced RLS, read and written in a transaction
scoped to the tenant) and comes from the owner's migrations: ``role_bindings_table``
with ``tenancy.scoping.rls.migration_statements`` (RLS and DML grants to the application
role, which both the services and the CLI use). Before those have run on PostgreSQL there
is no stored binding: reads find none (logged once), writes raise ``ConfigurationError``.
Any other failure to read is an error, and the refresher refuses the decision on it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    delete,
    inspect,
    select,
)
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import ConfigurationError, DecisionUnavailable, InvalidRequest, NotFound
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.scoping.rls import tenant_transaction

if TYPE_CHECKING:
    from tenancy.authz.bundle import PolicyBundle
    from tenancy.keys.state import KeyStateSignal

logger = logging.getLogger("tenancy.authz")

TABLE = "tenancy_role_bindings"
# What the application role needs: the services read, the CLI binds, unbinds, releases.
ROLE_BINDING_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
MAX_SUBJECT = 255
MAX_ROLE = 64
MAX_ROLES = 64
_PATH = ("tenancy", "role_bindings")
_STRIPES = 64

metadata = MetaData()

role_bindings_table = Table(
    TABLE,
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("subject", String(MAX_SUBJECT), primary_key=True),
    Column("roles", Text, nullable=False),  # a JSON array of role names, sorted, unique
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(255), nullable=False),
)


class RoleBindings:
    """Each tenant's role bindings, in the database; every change announced on ``signal``.

    Args:
        engine: the database (SQLite or PostgreSQL).
        signal: where every process learns of a change (default: this process only).
        events: receives ``roles.bound``, ``roles.unbound`` and ``roles.released``
            (default: the log).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        signal: KeyStateSignal | None = None,
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if signal is None:
            from tenancy.keys.state import ProcessKeyState

            signal = ProcessKeyState()
        self._engine = engine
        self.signal: KeyStateSignal = signal
        self._events = events if events is not None else LoggingSink()
        self._clock = clock
        self._warned = False

    def create_schema(self) -> None:
        """Create the table if absent, without RLS (SQLite, tests); on PostgreSQL the
        owner's migrations create it."""
        try:
            metadata.create_all(self._engine)
        except OperationalError:  # another process created it between check and create
            if not inspect(self._engine).has_table(TABLE):
                raise

    def close(self) -> None:
        """Release the signal (a mapped file, a Redis listener); the engine stays the
        caller's."""
        close = getattr(self.signal, "close", None)
        if close is not None:
            close()

    def of_tenant(self, tenant_id: str) -> dict[str, list[str]]:
        """The tenant's bindings, subject -> sorted roles (``[]``: unbound, so no role);
        an empty dict when the tenant keeps none (its roles come from tokens).

        Raises:
            InvalidRequest: ``tenant_id`` is not a tenant id.
            ValueError: a stored row is not a list of role names.
            SQLAlchemyError: the database failed (a missing table is no bindings).
        """
        tenant_id = _tenant(tenant_id)
        table = role_bindings_table
        query = select(table.c.subject, table.c.roles).where(table.c.tenant_id == tenant_id)
        try:
            with tenant_transaction(self._engine, tenant_id) as conn:
                rows = conn.execute(query).all()
        except (OperationalError, ProgrammingError) as exc:
            if not _missing_table(exc):
                raise
            if not self._warned:
                self._warned = True
                logger.warning("%s does not exist (migrations not run): no role bindings", TABLE)
            return {}
        return {str(subject): _stored_roles(roles) for subject, roles in rows}

    def bind(self, tenant_id: str, subject: str, roles: Iterable[str], *, actor: str) -> list[str]:
        """Give ``subject`` exactly ``roles`` in the tenant (replacing what it had); from
        then on the tenant's roles come from its bindings. Returns the roles, sorted.

        Raises:
            InvalidRequest: an empty or malformed tenant id, subject, role or actor, or no
                role at all (``unbind`` takes every role away).
            ConfigurationError: the table does not exist (migrations not run).
        """
        tenant_id, subject, actor = _tenant(tenant_id), _subject(subject), _actor(actor)
        wanted = _roles(roles)
        with self._writing(tenant_id) as conn:
            previous = self._roles_of(conn, tenant_id, subject)
            self._put(conn, tenant_id, subject, wanted, actor)
        before = {} if previous is None else {"previous": ",".join(previous)}
        self._announce(
            "roles.bound", tenant_id, actor, subject=subject, roles=",".join(wanted), **before
        )
        return wanted

    def unbind(self, tenant_id: str, subject: str, *, actor: str) -> list[str]:
        """Take every role of ``subject`` in the tenant away; returns the roles it had. The
        subject keeps a row without roles: it does not get its token's roles back.

        Raises:
            InvalidRequest: an empty or malformed tenant id, subject or actor.
            NotFound: the tenant keeps no role bindings (its principals' roles come from
                their tokens, which an unbinding cannot take away: bind them first).
            ConfigurationError: the table does not exist (migrations not run).
        """
        tenant_id, subject, actor = _tenant(tenant_id), _subject(subject), _actor(actor)
        table = role_bindings_table
        with self._writing(tenant_id) as conn:
            kept = conn.execute(
                select(table.c.subject).where(table.c.tenant_id == tenant_id).limit(1)
            ).first()
            if kept is None:
                raise NotFound(
                    "the tenant keeps no role bindings: its principals' roles come from "
                    "their tokens"
                )
            previous = self._roles_of(conn, tenant_id, subject) or []
            self._put(conn, tenant_id, subject, [], actor)
        self._announce(
            "roles.unbound",
            tenant_id,
            actor,
            subject=subject,
            roles="",
            previous=",".join(previous),
        )
        return previous

    def release(self, tenant_id: str, *, actor: str) -> int:
        """Delete every binding of the tenant: its principals' roles come from their
        tokens again. Returns how many rows went.

        Raises:
            InvalidRequest: an empty or malformed tenant id or actor.
            ConfigurationError: the table does not exist (migrations not run).
        """
        tenant_id, actor = _tenant(tenant_id), _actor(actor)
        table = role_bindings_table
        with self._writing(tenant_id) as conn:
            gone = conn.execute(delete(table).where(table.c.tenant_id == tenant_id)).rowcount
        self._announce("roles.released", tenant_id, actor)
        return int(gone or 0)

    # -- internals ------------------------------------------------------------------

    @contextmanager
    def _writing(self, tenant_id: str) -> Iterator[Connection]:
        try:
            with tenant_transaction(self._engine, tenant_id) as conn:
                yield conn
        except (OperationalError, ProgrammingError) as exc:
            if _missing_table(exc):
                raise ConfigurationError(
                    f"{TABLE} does not exist: run the migrations that create it"
                ) from exc
            raise

    @staticmethod
    def _roles_of(conn: Connection, tenant_id: str, subject: str) -> list[str] | None:
        table = role_bindings_table
        stored = conn.execute(
            select(table.c.roles).where(table.c.tenant_id == tenant_id, table.c.subject == subject)
        ).scalar()
        try:
            return None if stored is None else _stored_roles(stored)
        except ValueError:
            return None  # a malformed row is replaced; the event just cannot say what it held

    def _put(
        self, conn: Connection, tenant_id: str, subject: str, roles: list[str], actor: str
    ) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        changes = {"roles": json.dumps(roles), "updated_at": self._clock.now(), "updated_by": actor}
        row = {"tenant_id": tenant_id, "subject": subject, **changes}
        key = ["tenant_id", "subject"]
        if conn.dialect.name == "postgresql":
            upsert = postgresql.insert(role_bindings_table).values(row)
            conn.execute(upsert.on_conflict_do_update(index_elements=key, set_=changes))
        elif conn.dialect.name == "sqlite":
            replace = sqlite.insert(role_bindings_table).values(row)
            conn.execute(replace.on_conflict_do_update(index_elements=key, set_=changes))
        else:
            raise ConfigurationError("role bindings are stored on SQLite or PostgreSQL")

    def _announce(self, action: str, tenant_id: str, actor: str, **details: str) -> None:
        at = self._clock.now()
        try:
            self._events.emit(SecurityEvent(action, at, tenant_id, actor, details=details))
        finally:
            self.signal.changed(tenant_id)  # committed: every process's next decision reloads


class RoleBindingsRefresher:
    """Keeps ``bundle``'s ``role_bindings`` entry of each tenant as ``store`` holds it.

    ``current`` is the hot path (one ``generation()`` call and one dict lookup, no I/O);
    ``refresh`` reloads a tenant whose generation moved and blocks (run it off the event
    loop). Thread-safe: refreshes of one tenant are serialised, and a tenant counts as
    current only once its entry is in the bundle and every engine took it.
    """

    def __init__(self, store: RoleBindings, bundle: PolicyBundle) -> None:
        self.store = store
        self.bundle = bundle
        base = bundle.get(_PATH)
        # What the bundle's own data says per tenant: applied when the store has nothing.
        self._base: dict[str, Any] = base if isinstance(base, dict) else {}
        self._signal = store.signal
        self._loaded: dict[str, int] = {}
        self._unapplied: set[str] = set()
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def current(self, tenant_id: str) -> bool:
        """Whether the tenant's bindings were loaded under its current generation (no
        I/O); if not, nothing may be decided or served from a cache before ``refresh``."""
        return self._loaded.get(tenant_id) == self._signal.generation(tenant_id)

    def refresh(self, tenant_id: str) -> None:
        """Reload the tenant's bindings if its generation moved, and apply them.

        Raises:
            DecisionUnavailable: the bindings could not be read (the database is down, a
                row is malformed) or applied (an engine refused them); the tenant stays
                not current, so every decision for it is refused until a reload succeeds.
        """
        with self._locks[hash(tenant_id) % _STRIPES]:
            # Read before the rows: a change committed meanwhile moves it again afterwards.
            generation = self._signal.generation(tenant_id)
            if self._loaded.get(tenant_id) == generation and tenant_id not in self._unapplied:
                return
            self._loaded.pop(tenant_id, None)
            try:
                stored = self.store.of_tenant(tenant_id)
            except Exception as exc:
                raise DecisionUnavailable(
                    f"role bindings could not be read: {type(exc).__name__}"
                ) from exc
            wanted = stored or self._base.get(tenant_id)
            path = (*_PATH, tenant_id)
            if tenant_id in self._unapplied or self.bundle.get(path) != wanted:
                self._unapplied.add(tenant_id)  # until every listener has taken it
                try:
                    self.bundle.set(path, wanted)
                except Exception as exc:
                    raise DecisionUnavailable(
                        f"role bindings could not be applied: {type(exc).__name__}"
                    ) from exc
                self._unapplied.discard(tenant_id)
            self._loaded[tenant_id] = generation

    def close(self) -> None:
        """Close the store (its signal)."""
        self.store.close()


def _missing_table(exc: DBAPIError) -> bool:
    """Whether PostgreSQL says the table does not exist (42P01, undefined_table). Not on
    SQLite, where the table is created with the store: missing there is an error."""
    return getattr(exc.orig, "sqlstate", None) == "42P01" and TABLE in str(exc.orig)


def _name(value: object, field: str, limit: int, *, what: str = "") -> str:
    """``value`` if it is a non-empty printable string without surrounding spaces (nor
    commas, for a role: the CLI splits on them), at most ``limit`` characters."""
    if (
        not isinstance(value, str)
        or not value
        or value != value.strip()
        or not value.isprintable()
        or len(value) > limit
        or (field == "roles" and "," in value)
    ):
        message = f"{what or field} must be a non-empty printable string without surrounding "
        message += f"spaces{' or commas' if field == 'roles' else ''}, at most {limit} characters"
        raise InvalidRequest(message, errors={field: message})
    return value


def _tenant(tenant_id: object) -> str:
    return _name(tenant_id, "tenant_id", 36, what="a tenant id")


def _subject(subject: object) -> str:
    return _name(subject, "subject", MAX_SUBJECT, what="a subject")


def _actor(actor: object) -> str:
    return _name(actor, "actor", 255, what="who made the change")


def _roles(roles: object) -> list[str]:
    if isinstance(roles, (str, bytes)) or not isinstance(roles, Iterable):
        raise InvalidRequest("roles are a list of names", errors={"roles": "not a list"})
    found = [_name(role, "roles", MAX_ROLE, what="a role") for role in roles]
    if not 0 < len(set(found)) <= MAX_ROLES:
        message = f"bind 1 to {MAX_ROLES} roles (unbind takes every role away)"
        raise InvalidRequest(message, errors={"roles": message})
    return sorted(set(found))


def _stored_roles(stored: object) -> list[str]:
    value = json.loads(stored) if isinstance(stored, str) else None
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise ValueError(f"a row of {TABLE} holds no list of role names")
    return [str(r) for r in value]
