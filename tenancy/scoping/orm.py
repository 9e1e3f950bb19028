"""ORM scoping: every ORM statement of a ``TenantSession`` is limited to the bound tenant.

The recipe is SQLAlchemy's ``filter_public`` example: a ``do_orm_execute`` hook adds
``with_loader_criteria(TenantScoped, tenant_id == <bound tenant>)`` to SELECT, UPDATE and
DELETE (relationship and lazy loads included), and a ``before_flush`` hook stamps new
objects with the tenant and refuses to write another tenant's object. It fails closed:

- with no tenant bound, a ``TenantSession`` runs nothing at all (ORM, Core or ``text()``),
  unless inside :func:`system_scope`, which is explicit, names a reason and is audited;
- INSERT, UPDATE and DELETE statements run with ``session.execute`` get the same
  treatment as a flush: the tenant column stamped or checked before any SQL is sent
  (``statements.py``), and the criteria on UPDATE, DELETE and INSERT ... SELECT;
- a session first used for tenant A refuses to be used for tenant B, or with no tenant
  bound; a transaction begun under system scope refuses tenant use until it ends (and
  the reverse). ``connection()`` is refused too: that connection carries A's setting;
- the identity map never hands out another tenant's object: a lookup by a key of
  another tenant goes to the database (and finds nothing there), and objects loaded
  under system scope are detached when a tenant's transaction begins.

This layer cannot see inside ``text()`` SQL, nor scope a Core ``select()`` over a ``Table``
(only mapped classes get criteria): PostgreSQL Row-Level Security is the second,
independent layer that catches what it misses.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Connection,
    ForeignKeyConstraint,
    String,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.orm import (
    Mapped,
    Mapper,
    ORMExecuteState,
    Session,
    SessionTransaction,
    UOWTransaction,
    mapped_column,
    with_loader_criteria,
)
from sqlalchemy.orm.interfaces import ORMOption

from tenancy import consistency
from tenancy.clock import SYSTEM_CLOCK
from tenancy.context import current_or_none
from tenancy.errors import (
    ConfigurationError,
    CrossTenantWrite,
    NoTenantContext,
    TenantContextConflict,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.scoping.rls import confirm_tenant, reset_setting_on_return, set_tenant
from tenancy.scoping.statements import guard_statement, tenant_table

if TYPE_CHECKING:
    from sqlalchemy.orm.session import _BindArguments

_O = TypeVar("_O", bound=object)

SYSTEM_SCOPE_OPTION = "tenancy_system_scope"
_SESSION_TENANT = "tenancy_tenant_id"  # the one tenant a session serves (first use)
_TRANSACTION_SCOPE = "tenancy_transaction_scope"  # the scope its transaction began under
_LAST_SCOPE = "tenancy_last_scope"  # the scope of its previous transaction

_system_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tenancy_system_scope", default=None
)


class TenantScoped:
    """Mixin for tenant-owned models: ``tenant_id`` NOT NULL, first column of the PK.

    Declare the rest of the primary key on the model; composite foreign keys to other
    tenant-owned tables must include ``tenant_id`` (see :func:`tenant_foreign_key`).
    """

    tenant_id: Mapped[str] = mapped_column(
        String(36), primary_key=True, nullable=False, sort_order=-1000
    )


def tenant_foreign_key(
    columns: Sequence[str], target_table: str, target_columns: Sequence[str], **kwargs: Any
) -> ForeignKeyConstraint:
    """A composite foreign key that leads with ``tenant_id`` on both sides, so a row can
    only ever reference a row of its own tenant."""
    return ForeignKeyConstraint(
        ["tenant_id", *columns],
        [f"{target_table}.tenant_id", *(f"{target_table}.{c}" for c in target_columns)],
        **kwargs,
    )


def tenant_unique(*columns: str, name: str | None = None) -> UniqueConstraint:
    """A uniqueness rule per tenant: a clash can never reveal another tenant's row."""
    return UniqueConstraint("tenant_id", *columns, name=name)


@contextmanager
def system_scope(reason: str, *, events: EventSink | None = None) -> Iterator[None]:
    """Run without a tenant (migrations, retention jobs): no criteria, no stamping, and
    no cross-layer consistency check (``tenancy.consistency``) inside the block.

    Raises:
        ConfigurationError: ``reason`` is empty; every use must say why.
    """
    if not reason.strip():
        raise ConfigurationError("system_scope needs a reason")
    (events if events is not None else LoggingSink()).emit(
        SecurityEvent(action="system_scope.entered", at=SYSTEM_CLOCK.now(), reason=reason)
    )
    token = _system_reason.set(reason)
    try:
        with consistency.suspended():
            yield
    finally:
        _system_reason.reset(token)


class TenantSession(Session):
    """A Session that scopes every statement to the bound tenant (see module docs).

    Besides the event hooks below, it guards the paths that run no hook: a connection
    handed out by :meth:`connection`, identity-map hits (``get``, ``merge``, many-to-one
    loads) and the legacy ``bulk_*`` methods.
    """

    def connection(
        self,
        bind_arguments: _BindArguments | None = None,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> Connection:
        """The session's connection, only for the tenant (or system scope) its
        transaction began under: it carries that tenant's setting and sees its rows."""
        _scope_for(self)
        return super().connection(
            bind_arguments=bind_arguments, execution_options=execution_options
        )

    def _identity_lookup(
        self, mapper: Mapper[Any], primary_key_identity: Any, *args: Any, **kwargs: Any
    ) -> Any:
        # Every identity-map read (get(), many-to-one lazy loads) comes through here. A
        # key of another tenant is reported as absent, so the row is looked up with SQL
        # under the ORM criteria (and RLS), which never return it.
        tenant_id = _scope_for(self)
        if tenant_id is not None and _key_tenant(mapper, primary_key_identity) not in (
            None,
            tenant_id,
        ):
            return None
        return super()._identity_lookup(mapper, primary_key_identity, *args, **kwargs)

    def merge(
        self, instance: _O, *, load: bool = True, options: Sequence[ORMOption] | None = None
    ) -> _O:
        """Merge an object of the bound tenant; another tenant's is refused up front
        (merging would look it up in the identity map and hand its state back)."""
        tenant_id = _scope_for(self)
        if tenant_id is not None and isinstance(instance, TenantScoped):
            value = instance.__dict__.get("tenant_id")
            if value is not None and value != tenant_id:
                raise CrossTenantWrite("refusing to merge a row of another tenant")
        return super().merge(instance, load=load, options=options)

    def bulk_save_objects(self, objects: Iterable[object], *args: Any, **kwargs: Any) -> None:
        """Legacy bulk save: runs no flush hook, so each object is stamped or refused here."""
        tenant_id = _scope_for(self)
        objects = list(objects)
        if tenant_id is not None:
            for obj in objects:
                if isinstance(obj, TenantScoped):
                    _stamp_object(obj, tenant_id)
        super().bulk_save_objects(objects, *args, **kwargs)

    def bulk_insert_mappings(
        self,
        mapper: Mapper[Any] | type[Any],
        mappings: Iterable[dict[str, Any]],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Legacy bulk INSERT: each mapping stamped with the tenant, or refused."""
        super().bulk_insert_mappings(mapper, _stamped(self, mapper, mappings), *args, **kwargs)

    def bulk_update_mappings(
        self, mapper: Mapper[Any] | type[Any], mappings: Iterable[dict[str, Any]]
    ) -> None:
        """Legacy bulk UPDATE by primary key: the key's tenant stamped, or refused."""
        super().bulk_update_mappings(mapper, _stamped(self, mapper, mappings))


def pin_session(session: Session, tenant_id: str) -> None:
    """Dedicate ``session`` to one tenant before its first use (``RegionalSessions``
    routes a session by its tenant's region); otherwise its first use pins it."""
    session.info[_SESSION_TENANT] = tenant_id


def _scope_for(session: Session) -> str | None:
    """The tenant this use of ``session`` is for, or None under system scope.

    Raises:
        NoTenantContext: no tenant is bound and no system scope is open.
        TenantContextConflict: the session serves another tenant, or its transaction
            began under system scope while this is a tenant's use (or the reverse).
    """
    if _system_reason.get() is not None:
        scope: object = _SYSTEM
        tenant_id = None
    else:
        ctx = current_or_none()
        if ctx is None:
            raise NoTenantContext("a TenantSession needs a bound tenant or system_scope()")
        scope = tenant_id = ctx.tenant_id
        # The first tenant that uses a session keeps it for the session's life.
        if session.info.setdefault(_SESSION_TENANT, tenant_id) != tenant_id:
            raise TenantContextConflict("this session was opened for another tenant")
    pinned = session.info.get(_TRANSACTION_SCOPE)
    if pinned is not None and pinned != scope and session.in_transaction():
        raise TenantContextConflict(
            "this session's transaction began for another tenant (or system scope); "
            "commit or roll it back first"
        )
    if tenant_id is not None:
        # The tenant of the criteria, the stamping and the setting (consistency mode only).
        consistency.observe(consistency.DB, tenant_id)
    return tenant_id


_SYSTEM = object()  # the scope of a transaction begun under system_scope()


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_statement(state: ORMExecuteState) -> None:
    if state.execution_options.get(SYSTEM_SCOPE_OPTION):
        raise TenantContextConflict(f"use system_scope() instead of {SYSTEM_SCOPE_OPTION}")
    tenant_id = _scope_for(state.session)
    if tenant_id is None:
        return
    table = (
        tenant_table(state.statement)
        if state.is_insert or state.is_update or state.is_delete
        else None
    )
    if table is not None:
        guard_statement(state, table, tenant_id)
    if state.is_orm_statement and (
        state.is_select
        or state.is_update
        or state.is_delete
        or (state.is_insert and table is not None)
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantScoped,
                # Read into a local first: the lambda is cached and its closure variable
                # becomes a bound parameter, so each tenant gets its own value.
                lambda cls: cls.tenant_id == tenant_id,
                include_aliases=True,
            )
        )


@event.listens_for(TenantSession, "before_flush")
def _guard_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    tenant_id = _scope_for(session)
    if tenant_id is None:
        return
    for obj in session.new:
        if isinstance(obj, TenantScoped):
            _stamp_object(obj, tenant_id)
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, TenantScoped) and obj.tenant_id != tenant_id:
            raise CrossTenantWrite("refusing to change a row of another tenant")


@event.listens_for(TenantSession, "after_begin")
def _begin_for_tenant(session: Session, transaction: Any, connection: Connection) -> None:
    # Any use of the session (even Core or text()) opens a transaction first: with no
    # tenant and no system scope, nothing runs. The transaction is pinned to the scope it
    # began under until it ends. On PostgreSQL the tenant is set for Row-Level Security,
    # local to this transaction; under system scope the setting is set to '' locally, so
    # a value some code left on the connection at session level never applies here.
    tenant_id = _scope_for(session)
    scope = _SYSTEM if tenant_id is None else tenant_id
    session.info[_TRANSACTION_SCOPE] = scope
    if session.info.get(_LAST_SCOPE, scope) != scope and tenant_id is not None:
        _evict_other_tenants(session, tenant_id)
    session.info[_LAST_SCOPE] = scope
    if connection.dialect.name == "postgresql":
        reset_setting_on_return(connection.engine)
        set_tenant(connection, tenant_id or "")
    if tenant_id is not None:
        confirm_tenant(connection, tenant_id)  # consistency mode: read the setting back


@event.listens_for(TenantSession, "after_transaction_end")
def _end_of_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_TRANSACTION_SCOPE, None)


@event.listens_for(TenantSession, "before_commit")
def _confirm_before_commit(session: Session) -> None:
    # Consistency mode: the setting must still name the request's tenant when the
    # transaction commits (SQL in the transaction may have changed it); if it does not,
    # the commit is refused and the transaction rolls back.
    if consistency.active() is not None and session.in_transaction() and session.bind is not None:
        tenant_id = _scope_for(session)
        if tenant_id is not None:
            confirm_tenant(session.connection(), tenant_id)


def _stamp_object(obj: TenantScoped, tenant_id: str) -> None:
    if obj.tenant_id is None:
        obj.tenant_id = tenant_id
    elif obj.tenant_id != tenant_id:
        raise CrossTenantWrite("refusing to write a row of another tenant")


def _stamped(
    session: Session, mapper: Mapper[Any] | type[Any], mappings: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    tenant_id = _scope_for(session)
    rows = list(mappings)
    if tenant_id is None or not issubclass(inspect(mapper).class_, TenantScoped):
        return rows
    out = []
    for row in rows:
        value = row.get("tenant_id")
        if value is None:
            row = {**row, "tenant_id": tenant_id}
        elif value != tenant_id:
            raise CrossTenantWrite("refusing to write a row of another tenant")
        out.append(row)
    return out


def _key_tenant(mapper: Mapper[Any], primary_key_identity: Any) -> Any:
    """The tenant in an identity key, or None for models that are not tenant-owned."""
    position = _tenant_position(mapper)
    if position is None:
        return None
    if isinstance(primary_key_identity, Mapping):
        return primary_key_identity.get("tenant_id")
    return primary_key_identity[position]


def _tenant_position(mapper: Mapper[Any]) -> int | None:
    if not issubclass(mapper.class_, TenantScoped):
        return None
    for index, column in enumerate(mapper.primary_key):
        if column.key == "tenant_id":
            return index
    return None


def _evict_other_tenants(session: Session, tenant_id: str) -> None:
    """Detach every unmodified object of another tenant (loaded under system scope or in
    an earlier transaction of another tenant), so no later hit can hand it out."""
    for state in list(session.identity_map.all_states()):
        if state.key is None or state.modified:
            continue
        if _key_tenant(state.mapper, state.key[1]) not in (None, tenant_id):
            session.expunge(state.obj())
