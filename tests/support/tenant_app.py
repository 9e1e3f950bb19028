"""A small tenant-isolated app for the library's tests, built as Starlette's own tests
build theirs: entries stored through the scoping layer only, every route behind a scope.

Its paths and scopes are those the policy tests' fixture application declares for a
``worklogs`` service (``policies/cases/app.json``, laid over the shipped data by
``fixture_bundle()``), so that the policy tests run it under the real policies:
``GET/POST /worklogs``, ``GET/PATCH/DELETE /worklogs/{id}`` (deleting also asks for the
finer action ``worklogs.delete``), ``GET /whoami`` and the public ``/healthz``.
A row of another tenant answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Engine, Integer, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy.authn import Authenticator
from tenancy.authz import Authorizer, Resource, authorize
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import current, require_scope
from tenancy.errors import InvalidRequest, NotFound
from tenancy.events import EventSink
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.scoping import TenantScoped, TenantSession
from tenancy.support import SupportAccess
from tenancy.tenants import TenantRegistry

READ, WRITE = "worklogs:read", "worklogs:write"


class Base(DeclarativeBase):
    pass


class Entry(TenantScoped, Base):
    __tablename__ = "entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    author: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(500))
    minutes: Mapped[int] = mapped_column(Integer)


class EntryStore:
    """The bound tenant's entries; without a bound tenant nothing runs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, class_=TenantSession, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self._engine)

    def list(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return [_public(e) for e in session.scalars(select(Entry).order_by(Entry.id))]

    def get(self, entry_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            return _public(_one(session, entry_id))

    def create(self, *, description: str, minutes: int) -> dict[str, Any]:
        entry = Entry(
            id=str(uuid.uuid4()),
            author=current().principal.subject,
            description=description,
            minutes=minutes,
        )
        with self._sessions() as session:
            session.add(entry)  # tenant_id is stamped by the scoping layer
            session.commit()
            return _public(entry)

    def update(self, entry_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self._sessions() as session:
            entry = _one(session, entry_id)
            for name, value in changes.items():
                setattr(entry, name, value)
            session.commit()
            return _public(entry)

    def locate(self, entry_id: str) -> tuple[str, str]:
        """(tenant id, id) of an entry."""
        with self._sessions() as session:
            entry = _one(session, entry_id)
            return entry.tenant_id, entry.id

    def delete(self, entry_id: str) -> None:
        with self._sessions() as session:
            done = session.execute(delete(Entry).where(Entry.id == entry_id))
            session.commit()
        if getattr(done, "rowcount", 0) != 1:
            raise NotFound("no such entry")


def create_app(
    *,
    store: EntryStore,
    verifier: Authenticator,
    tenants: TenantRegistry,
    region: str,
    events: EventSink | None = None,
    authorizer: Authorizer | None = None,
    support: SupportAccess | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def whoami(request: Request) -> Response:
        ctx = current()
        return JSONResponse(
            {
                "tenant": ctx.tenant_slug,
                "tenant_id": ctx.tenant_id,
                "subject": ctx.principal.subject,
                "scopes": sorted(ctx.principal.scopes),
                "caller": ctx.caller,
            }
        )

    async def listing(request: Request) -> Response:
        require_scope(READ)
        return JSONResponse({"items": await run_in_threadpool(store.list)})

    async def create(request: Request) -> Response:
        require_scope(WRITE)
        fields = await _fields(request)
        created = await run_in_threadpool(lambda: store.create(**fields))
        return JSONResponse(created, status_code=201)

    async def get(request: Request) -> Response:
        require_scope(READ)
        return JSONResponse(await run_in_threadpool(store.get, request.path_params["id"]))

    async def patch(request: Request) -> Response:
        require_scope(WRITE)
        changes = await _fields(request)
        return JSONResponse(
            await run_in_threadpool(store.update, request.path_params["id"], changes)
        )

    async def remove(request: Request) -> Response:
        require_scope(WRITE)
        tenant_id, entry_id = await run_in_threadpool(store.locate, request.path_params["id"])
        if authorizer is not None:
            await authorize(
                "worklogs.delete", Resource(tenant_id=tenant_id, type="worklog", id=entry_id)
            )
        await run_in_threadpool(store.delete, entry_id)
        return Response(status_code=204)

    routes = [
        Route("/healthz", healthz),
        Route("/whoami", whoami),
        Route("/worklogs", listing, methods=["GET"]),
        Route("/worklogs", create, methods=["POST"]),
        Route("/worklogs/{id}", get, methods=["GET"]),
        Route("/worklogs/{id}", patch, methods=["PATCH"]),
        Route("/worklogs/{id}", remove, methods=["DELETE"]),
    ]
    middleware = Middleware(
        TenancyMiddleware,
        verifier=verifier,
        tenants=tenants,
        region=region,
        events=events,
        clock=clock,
        authorizer=authorizer,
        routes=routes,
        support=support,
    )
    return Starlette(
        routes=routes, middleware=[middleware], exception_handlers=exception_handlers()
    )


async def _fields(request: Request) -> dict[str, Any]:
    """``description`` (text) and ``minutes`` (a whole number) of a JSON object body;
    anything else in it is ignored."""
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequest("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body is not a JSON object")
    fields = {k: body[k] for k in ("description", "minutes") if k in body}
    text, minutes = fields.get("description", ""), fields.get("minutes", 0)
    if not isinstance(text, str) or type(minutes) is not int:
        raise InvalidRequest("invalid entry", errors={"entry": "description text, minutes int"})
    return fields


def _one(session: TenantSession, entry_id: str) -> Entry:
    entry = session.scalars(select(Entry).where(Entry.id == entry_id)).first()
    if entry is None:
        raise NotFound("no such entry")
    return entry


def _public(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "tenant_id": entry.tenant_id,
        "author": entry.author,
        "description": entry.description,
        "minutes": entry.minutes,
    }
