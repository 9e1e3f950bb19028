"""Demonstrates tenant-owned storage through the scoping layer only.

``Worklog`` is ``TenantScoped`` and every query runs in a ``TenantSession``: the tenant
criteria, the stamping of new rows and the refusal to run without a tenant come from
``tenancy.scoping``, not from hand-written ``WHERE tenant_id = ...`` clauses. On
PostgreSQL the same session also sets the Row-Level Security setting.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, DateTime, Engine, Integer, String, delete, literal, select, tuple_
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from tenancy.clock import SYSTEM_CLOCK, Clock, as_utc
from tenancy.context import current
from tenancy.errors import NotFound
from tenancy.keys import EncryptedString, TenantKeys
from tenancy.keys.columns import SESSION_KEYS, UNREADABLE, unreadable_fields
from tenancy.scoping import TenantScoped, TenantSession
from tenancy_examples.worklogs.paging import Position


class Base(DeclarativeBase):
    pass


class Worklog(TenantScoped, Base):
    __tablename__ = "worklogs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    author: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(500))
    minutes: Mapped[int] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Encrypted at rest under the tenant's data key, bound to this row (tenancy.keys).
    comment: Mapped[str | None] = mapped_column(EncryptedString(), nullable=True)


class WorklogStore:
    """CRUD on worklogs of the current tenant only."""

    def __init__(
        self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK, keys: TenantKeys | None = None
    ) -> None:
        self._engine = engine
        # One damaged comment must not deny the tenant its other worklogs: such a value is
        # served as unreadable (null, named in "unreadable") and recorded as an event.
        info: dict[str, Any] = {} if keys is None else {SESSION_KEYS: keys, UNREADABLE: "mark"}
        self._sessions = sessionmaker(
            engine, class_=TenantSession, expire_on_commit=False, info=info
        )
        self._clock = clock

    def create_schema(self) -> None:
        Base.metadata.create_all(self._engine)

    def list(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` worklogs of the bound tenant (exports use this)."""
        return [*self.page(limit=limit)[0]]

    def page(
        self, *, limit: int, after: Position | None = None
    ) -> tuple[Sequence[dict[str, Any]], Position | None]:
        """One page, newest first, after ``after``; and the position of the next page
        (None when this one is the last)."""
        order = (Worklog.day.desc(), Worklog.created_at.desc(), Worklog.id.desc())
        query = select(Worklog).order_by(*order).limit(limit + 1)
        if after is not None:
            query = query.where(
                tuple_(Worklog.day, Worklog.created_at, Worklog.id)
                < tuple_(literal(after.day), literal(after.created_at), literal(after.id))
            )
        with self._sessions() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        position = None if last is None else Position(last.day, last.created_at, last.id)
        return [_public(w) for w in rows], position

    def get(self, worklog_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            return _public(_one(session, worklog_id))

    @property
    def sessions(self) -> sessionmaker[TenantSession]:
        return self._sessions

    def create(
        self, *, description: str, minutes: int, day: date, comment: str | None = None
    ) -> dict[str, Any]:
        worklog = Worklog(
            id=str(uuid.uuid4()),
            author=current().principal.subject,
            description=description,
            minutes=minutes,
            day=day,
            created_at=self._clock.now(),
            comment=comment,
        )
        with self._sessions() as session:
            session.add(worklog)  # tenant_id is stamped by the scoping layer
            session.commit()
            return _public(worklog)

    def update(self, worklog_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self._sessions() as session:
            worklog = _one(session, worklog_id)
            for name, value in changes.items():
                setattr(worklog, name, value)
            session.commit()
            return _public(worklog)

    def locate(self, worklog_id: str) -> tuple[str, str]:
        """(tenant id, id) of a worklog, reading no encrypted column (so it works while
        the tenant's key is unavailable)."""
        with self._sessions() as session:
            found = session.execute(
                select(Worklog.tenant_id, Worklog.id).where(Worklog.id == _uuid(worklog_id))
            ).first()
        if found is None:
            raise NotFound("no such worklog")
        return str(found[0]), str(found[1])

    def delete(self, worklog_id: str) -> None:
        with self._sessions() as session:
            result = session.execute(delete(Worklog).where(Worklog.id == _uuid(worklog_id)))
            session.commit()
        if getattr(result, "rowcount", 0) != 1:
            raise NotFound("no such worklog")


def _one(session: TenantSession, worklog_id: str) -> Worklog:
    worklog = session.scalars(select(Worklog).where(Worklog.id == _uuid(worklog_id))).first()
    if worklog is None:
        raise NotFound("no such worklog")
    return worklog


def _uuid(value: str) -> str:
    # A malformed id is "not found", exactly like another tenant's id.
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound("no such worklog") from exc


def _public(worklog: Worklog) -> dict[str, Any]:
    created = as_utc(worklog.created_at)
    return {
        "id": worklog.id,
        "tenant_id": worklog.tenant_id,
        "author": worklog.author,
        "description": worklog.description,
        "minutes": worklog.minutes,
        "day": worklog.day.isoformat(),
        "comment": worklog.comment,
        "created_at": created.isoformat(),
        **({"unreadable": sorted(bad)} if (bad := unreadable_fields(worklog)) else {}),
    }
