"""Deliberately broken builds of the FastAPI example (test fixtures, never product code).

Each reads only plaintext columns: the encrypted comment would not open under another
tenant's key, which is the keys layer catching the bug, not the probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.scoping import AsyncTenantSession, system_scope
from tenancy_examples.fastapi_worklogs import store
from tenancy_examples.fastapi_worklogs.models import Worklog
from tenancy_examples.worklogs.paging import Position


def drop_listing_scoping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing runs under ``system_scope``, as a careless "summary" query might: on
    SQLite (no RLS beneath) every tenant's worklogs come back."""

    async def unscoped_page(
        session: AsyncTenantSession, *, limit: int, after: Position | None
    ) -> tuple[Sequence[Any], Position | None]:
        query = select(
            Worklog.id,
            Worklog.tenant_id,
            Worklog.author,
            Worklog.description,
            Worklog.minutes,
            Worklog.day,
            Worklog.created_at,
        ).limit(limit)
        with system_scope("mutant: a listing that forgot the tenant"):
            rows = (await session.execute(query)).all()
        return [Worklog(**row._asdict(), comment=None) for row in rows], None

    monkeypatch.setattr(store, "page", unscoped_page)


def drop_tenant_dependency(app: FastAPI) -> FastAPI:
    """``GET /worklogs/{worklog_id}`` rewritten without ``tenant_session``: it opens a
    plain ``AsyncSession`` on the same engine and looks the id up, whoever owns it."""
    sessions = app.state.sessions
    plain = async_sessionmaker(sessions.kw["bind"], class_=AsyncSession)

    async def get_worklog(worklog_id: str) -> dict[str, Any]:
        async with plain() as session:
            row = (
                await session.execute(
                    select(Worklog.id, Worklog.tenant_id, Worklog.description).where(
                        Worklog.id == worklog_id
                    )
                )
            ).first()
        if row is None:
            return {}
        return row._asdict()

    route = next(
        r
        for r in app.router.routes
        if isinstance(r, APIRoute) and r.path == "/worklogs/{worklog_id}" and "GET" in r.methods
    )
    app.router.routes.remove(route)
    app.add_api_route("/worklogs/{worklog_id}", get_worklog, methods=["GET"], response_model=None)
    app.openapi_schema = None
    return app
