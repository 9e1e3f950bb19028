"""ORM scoping: every ORM statement of a ``TenantSession`` is limited to the bound tenant.

The recipe is SQLAlchemy's ``filter_public`` example: a ``do_orm_execute`` hook adds
``with_loader_criteria(TenantScoped, tenant_id == <bound tenant>)`` to SELECT, UPDATE and
DELETE (relationship and lazy loads included), and a ``before_flush`` hook stamps new
objects with the tenant and refuses to write another tenant's object. It fails closed:

- with no tenant bound, a ``TenantSession`` runs nothing at all (ORM, Core or ``text()``),
  unless inside :func:`system_scope`, which is explicit, names a reason and is audited;
- a session first used for tenant A refuses to be used for tenant B, so its identity map
  can never hand A's objects to B.

This layer cannot see inside ``text()`` SQL: PostgreSQL Row-Level Security is the second,
independent layer that catches what it misses.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, ForeignKeyConstraint, String, UniqueConstraint, event
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    UOWTransaction,
    mapped_column,
    with_loader_criteria,
)

from tenancy import consistency
from tenancy.clock import SYSTEM_CLOCK
from tenancy.context import current_or_none
from tenancy.errors import CrossTenantWrite, NoTenantContext, TenantContextConflict
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.scoping.rls import confirm_tenant, set_tenant

SYSTEM_SCOPE_OPTION = "tenancy_system_scope"
_SESSION_TENANT = "tenancy_tenant_id"

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
        ValueError: ``reason`` is empty; every use must say why.
    """
    if not reason.strip():
        raise ValueError("system_scope needs a reason")
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
    """A Session that scopes every statement to the bound tenant (see module docs)."""


def _tenant_for(session: Session) -> str | None:
    """The tenant this use of ``session`` is for, or None under system scope."""
    if _system_reason.get() is not None:
        return None
    ctx = current_or_none()
    if ctx is None:
        raise NoTenantContext("a TenantSession needs a bound tenant or system_scope()")
    pinned = session.info.setdefault(_SESSION_TENANT, ctx.tenant_id)
    if pinned != ctx.tenant_id:
        raise TenantContextConflict("this session was opened for another tenant")
    # The tenant of the criteria, the stamping and the setting (consistency mode only).
    consistency.observe(consistency.DB, ctx.tenant_id)
    return ctx.tenant_id


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_statement(state: ORMExecuteState) -> None:
    if state.execution_options.get(SYSTEM_SCOPE_OPTION):
        raise TenantContextConflict(f"use system_scope() instead of {SYSTEM_SCOPE_OPTION}")
    tenant_id = _tenant_for(state.session)
    if tenant_id is None or not state.is_orm_statement:
        return
    if state.is_select or state.is_update or state.is_delete:
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
    tenant_id = _tenant_for(session)
    if tenant_id is None:
        return
    for obj in session.new:
        if isinstance(obj, TenantScoped):
            if obj.tenant_id is None:
                obj.tenant_id = tenant_id
            elif obj.tenant_id != tenant_id:
                raise CrossTenantWrite("refusing to insert a row of another tenant")
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, TenantScoped) and obj.tenant_id != tenant_id:
            raise CrossTenantWrite("refusing to change a row of another tenant")


@event.listens_for(TenantSession, "after_begin")
def _begin_for_tenant(session: Session, transaction: Any, connection: Connection) -> None:
    # Any use of the session (even Core or text()) opens a transaction first: with no
    # tenant and no system scope, nothing runs. On PostgreSQL the tenant is also set for
    # Row-Level Security, local to this transaction.
    tenant_id = _tenant_for(session)
    if tenant_id is not None:
        if connection.dialect.name == "postgresql":
            set_tenant(connection, tenant_id)
        confirm_tenant(connection, tenant_id)  # consistency mode: read the setting back


@event.listens_for(TenantSession, "before_commit")
def _confirm_before_commit(session: Session) -> None:
    # Consistency mode: the setting must still name the request's tenant when the
    # transaction commits (SQL in the transaction may have changed it); if it does not,
    # the commit is refused and the transaction rolls back.
    if consistency.active() is not None and session.in_transaction() \
            and session.bind is not None:
        tenant_id = _tenant_for(session)
        if tenant_id is not None:
            confirm_tenant(session.connection(), tenant_id)
