"""Demonstrates async queries that name no tenant: the session scopes them.

Every function takes the request's :class:`~tenancy.scoping.AsyncTenantSession`; none
writes ``WHERE tenant_id = ...``. Another tenant's worklog and a malformed id are the
same "not found".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, literal, select, tuple_

from tenancy.authz import Resource
from tenancy.errors import NotFound
from tenancy.scoping import AsyncTenantSession
from tenancy_examples.fastapi_worklogs.models import Worklog
from tenancy_examples.fastapi_worklogs.schemas import NewWorklog
from tenancy_examples.worklogs.paging import Position


async def page(
    session: AsyncTenantSession, *, limit: int, after: Position | None
) -> tuple[Sequence[Worklog], Position | None]:
    """One page, newest first, after ``after``; and where the next page starts (None on
    the last page)."""
    query = (
        select(Worklog)
        .order_by(Worklog.day.desc(), Worklog.created_at.desc(), Worklog.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(
            tuple_(Worklog.day, Worklog.created_at, Worklog.id)
            < tuple_(literal(after.day), literal(after.created_at), literal(after.id))
        )
    rows = list((await session.scalars(query)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Position(last.day, last.created_at, last.id)


async def get(session: AsyncTenantSession, worklog_id: str) -> Worklog:
    """The bound tenant's worklog ``worklog_id``.

    Raises:
        NotFound: no such worklog for this tenant (whether or not another has one).
    """
    found = await session.scalar(select(Worklog).where(Worklog.id == _uuid(worklog_id)))
    if found is None:
        raise NotFound("no such worklog")
    return found


async def create(session: AsyncTenantSession, body: NewWorklog, *, author: str) -> Worklog:
    """Insert a worklog; the session stamps its tenant and seals its comment."""
    worklog = Worklog(
        id=str(uuid.uuid4()),
        author=author,
        created_at=datetime.now(UTC),
        **body.model_dump(),
    )
    session.add(worklog)
    await session.commit()
    return worklog


async def locate(session: AsyncTenantSession, worklog_id: str) -> Resource:
    """The worklog as a policy resource (its owner and id), reading no encrypted column.

    Raises:
        NotFound: no such worklog for this tenant.
    """
    found = (
        await session.execute(
            select(Worklog.tenant_id, Worklog.id).where(Worklog.id == _uuid(worklog_id))
        )
    ).first()
    if found is None:
        raise NotFound("no such worklog")
    return Resource(tenant_id=str(found[0]), type="worklog", id=str(found[1]))


async def remove(session: AsyncTenantSession, worklog_id: str) -> None:
    """Delete the bound tenant's worklog ``worklog_id``.

    Raises:
        NotFound: no such worklog for this tenant.
    """
    result = await session.execute(delete(Worklog).where(Worklog.id == _uuid(worklog_id)))
    await session.commit()
    if getattr(result, "rowcount", 0) != 1:
        raise NotFound("no such worklog")


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound("no such worklog") from exc
