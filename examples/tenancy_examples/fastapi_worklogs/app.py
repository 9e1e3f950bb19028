"""Demonstrates a FastAPI service whose every route runs in the verified tenant context.

Routes: ``GET /healthz`` (public), ``GET /whoami``, ``GET /worklogs`` (cursor paging),
``POST /worklogs``, ``GET /worklogs/{worklog_id}`` and ``DELETE /worklogs/{worklog_id}``.
``TenancyMiddleware`` admits the request (token, tenant, the policy on the route); the
handlers take the context, their scopes, an ``AsyncTenantSession`` and, to delete, the
policy's decision on the worklog itself from ``tenancy.fastapi``'s dependencies. The
OpenAPI document (``/openapi.json``, public) lists each operation's scopes.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Body, Depends, FastAPI, Query, Response, Security
from sqlalchemy.ext.asyncio import async_sessionmaker

from tenancy.authn import Authenticator
from tenancy.authz import Authorizer, Decision, Resource
from tenancy.clock import as_utc
from tenancy.context import TenantContext
from tenancy.events import EventSink
from tenancy.fastapi import authorize, install, require_scopes, tenant_context, tenant_session
from tenancy.middleware import TenancyMiddleware
from tenancy.scoping import AsyncTenantSession
from tenancy.tenants import TenantRegistry
from tenancy_examples.fastapi_worklogs import store
from tenancy_examples.fastapi_worklogs.models import Worklog
from tenancy_examples.fastapi_worklogs.schemas import (
    EXAMPLE,
    NewWorklog,
    WhoAmI,
    WorklogOut,
    WorklogPage,
)
from tenancy_examples.worklogs.paging import MAX_LIMIT, parse_cursor

SERVICE = "fastapi-worklogs"
POLICY_DATA = Path(__file__).resolve().with_name("policy.json")
"""This service's routes, laid over the shipped policy data and the worklogs example's."""
PUBLIC = ("/healthz", "/openapi.json")
READ = "worklogs:read"
WRITE = "worklogs:write"
Reader = Annotated[TenantContext, Security(require_scopes, scopes=[READ])]
Writer = Annotated[TenantContext, Security(require_scopes, scopes=[WRITE])]


def create_app(
    *,
    sessions: async_sessionmaker[AsyncTenantSession],
    verifier: Authenticator,
    tenants: TenantRegistry,
    region: str,
    authorizer: Authorizer,
    events: EventSink | None = None,
    startup_audit: Callable[[], Sequence[object]] | None = None,
) -> FastAPI:
    """The service over ``sessions`` (an ``async_sessionmaker`` of ``AsyncTenantSession``
    with the tenants' keys in ``info``); ``authorizer`` decides every route and deletes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        authorizer.close()  # the decision log is written out before exit

    app = FastAPI(title="worklogs (FastAPI)", docs_url=None, redoc_url=None, lifespan=lifespan)
    install(app)
    scoped = tenant_session(sessions)  # one AsyncTenantSession per request, shared by its deps

    async def the_worklog(
        worklog_id: str, session: Annotated[AsyncTenantSession, Depends(scoped)]
    ) -> Resource:
        return await store.locate(session, worklog_id)

    @app.get("/healthz", openapi_extra={"security": []})
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/whoami")
    async def whoami(ctx: Annotated[TenantContext, Depends(tenant_context)]) -> WhoAmI:
        return WhoAmI(
            tenant=ctx.tenant_slug,
            tenant_id=ctx.tenant_id,
            subject=ctx.principal.subject,
            scopes=sorted(ctx.principal.scopes),
        )

    @app.get("/worklogs")
    async def list_worklogs(
        session: Annotated[AsyncTenantSession, Depends(scoped)],
        _: Reader,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        cursor: str | None = None,
    ) -> WorklogPage:
        rows, position = await store.page(session, limit=limit, after=parse_cursor(cursor))
        following = None
        if position is not None:
            following = f"/worklogs?{urlencode({'limit': limit, 'cursor': position.encode()})}"
        return WorklogPage(items=[_out(w) for w in rows], next=following)

    @app.post("/worklogs", status_code=201)
    async def create_worklog(
        body: Annotated[NewWorklog, Body(openapi_examples={"probe": {"value": EXAMPLE}})],
        session: Annotated[AsyncTenantSession, Depends(scoped)],
        ctx: Writer,
        response: Response,
    ) -> WorklogOut:
        created = await store.create(session, body, author=ctx.principal.subject)
        response.headers["Location"] = f"/worklogs/{created.id}"
        return _out(created)

    @app.get("/worklogs/{worklog_id}")
    async def get_worklog(
        worklog_id: str, session: Annotated[AsyncTenantSession, Depends(scoped)], _: Reader
    ) -> WorklogOut:
        return _out(await store.get(session, worklog_id))

    @app.delete("/worklogs/{worklog_id}", status_code=204)
    async def delete_worklog(
        worklog_id: str,
        session: Annotated[AsyncTenantSession, Depends(scoped)],
        _: Writer,
        decision: Annotated[Decision, Depends(authorize("worklogs.delete", resource=the_worklog))],
    ) -> None:
        await store.remove(session, worklog_id)

    app.add_middleware(
        TenancyMiddleware,
        verifier=verifier,
        tenants=tenants,
        region=region,
        public_paths=PUBLIC,
        events=events,
        startup_audit=startup_audit,
        authorizer=authorizer,
        routes=app.routes,  # read when the first request builds the stack: every route
    )
    app.state.sessions = sessions
    return app


def _out(worklog: Worklog) -> WorklogOut:
    return WorklogOut(
        id=worklog.id,
        tenant_id=worklog.tenant_id,
        author=worklog.author,
        description=worklog.description,
        minutes=worklog.minutes,
        day=worklog.day,
        comment=worklog.comment,
        created_at=as_utc(worklog.created_at),
    )
