"""Demonstrates a tenant-isolated API: every route runs inside a verified tenant context.

Routes: ``GET /healthz`` (public), ``GET /whoami``, ``GET/POST /worklogs``,
``GET /worklogs/export``, ``GET/PATCH/DELETE /worklogs/{id}``, ``POST /exports`` (a
snapshot, answered with a signed link valid for 24 h) and ``GET /exports/{token}``. Reading needs
``worklogs:read``, writing ``worklogs:write``, exporting ``worklogs:export`` (with MFA,
by policy). A worklog of another tenant answers 404, exactly like one that does not
exist. With an ``authorizer`` the policy decides every route first, and deleting also
asks for the finer action ``worklogs.delete`` on the worklog itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy.authn import Authenticator
from tenancy.authz import Authorizer, Resource, authorize
from tenancy.context import current, require_scope
from tenancy.errors import InvalidRequest, NotFound
from tenancy.events import EventSink
from tenancy.exports import ExportService
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.support import SupportAccess
from tenancy.tenants import TenantRegistry
from tenancy_examples.worklogs.paging import parse_cursor, parse_limit
from tenancy_examples.worklogs.payload import parse_json_object, read_body, worklog_fields
from tenancy_examples.worklogs.store import WorklogStore

READ = "worklogs:read"
WRITE = "worklogs:write"
EXPORT = "worklogs:export"


def create_app(
    *,
    store: WorklogStore,
    verifier: Authenticator,
    tenants: TenantRegistry,
    region: str,
    events: EventSink | None = None,
    startup_audit: Callable[[], Sequence[object]] | None = None,
    authorizer: Authorizer | None = None,
    support: SupportAccess | None = None,
    exports: ExportService | None = None,
) -> Starlette:
    """Build the worklogs service around an already-configured store and verifier.

    In the two-service deployment ``verifier`` is a ``ContextTokenVerifier`` that trusts
    the edge only; as a single service it can be a ``TokenVerifier`` for users' tokens.
    """

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
                "mfa": ctx.principal.mfa,
                "caller": ctx.caller,
                "request_id": ctx.request_id,
            }
        )

    async def list_worklogs(request: Request) -> Response:
        require_scope(READ)
        limit = parse_limit(request.query_params.get("limit"))
        after = parse_cursor(request.query_params.get("cursor"))
        items, position = await run_in_threadpool(store.page, limit=limit, after=after)
        next_link = None
        if position is not None:
            next_link = f"/worklogs?{urlencode({'limit': limit, 'cursor': position.encode()})}"
        return JSONResponse({"items": items, "next": next_link})

    async def create_worklog(request: Request) -> Response:
        require_scope(WRITE)
        fields = worklog_fields(parse_json_object(await read_body(request)), partial=False)
        created = await run_in_threadpool(lambda: store.create(**fields))
        return JSONResponse(
            created, status_code=201, headers={"Location": f"/worklogs/{created['id']}"}
        )

    async def export_worklogs(request: Request) -> Response:
        require_scope(EXPORT)
        return JSONResponse({"items": await run_in_threadpool(store.list, limit=10_000)})

    async def create_export(request: Request) -> Response:
        require_scope(EXPORT)
        if exports is None:
            raise NotFound("exports are not enabled here")
        raw = await read_body(request)
        body = parse_json_object(raw) if raw.strip() else {}
        fmt = body.get("format", "json")
        if not isinstance(fmt, str):
            raise InvalidRequest("invalid export", errors={"format": "must be a string"})
        link = await run_in_threadpool(exports.create, fmt)
        location = f"/exports/{link.token}"
        return JSONResponse(
            {
                "id": link.export_id,
                "format": link.format,
                "rows": link.rows,
                "expires_at": link.expires_at.isoformat(),
                "download": location,
            },
            status_code=201,
            headers={"Location": location, "Cache-Control": "no-store"},
        )

    async def download_export(request: Request) -> Response:
        require_scope(EXPORT)
        if exports is None:
            raise NotFound("exports are not enabled here")
        got = await run_in_threadpool(exports.download, request.path_params["token"])
        return Response(
            got.content,
            media_type=got.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{got.filename}"',
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def get_worklog(request: Request) -> Response:
        require_scope(READ)
        return JSONResponse(await run_in_threadpool(store.get, request.path_params["id"]))

    async def patch_worklog(request: Request) -> Response:
        require_scope(WRITE)
        changes = worklog_fields(parse_json_object(await read_body(request)), partial=True)
        updated = await run_in_threadpool(store.update, request.path_params["id"], changes)
        return JSONResponse(updated)

    async def delete_worklog(request: Request) -> Response:
        require_scope(WRITE)
        tenant_id, worklog_id = await run_in_threadpool(store.locate, request.path_params["id"])
        if authorizer is not None:
            await authorize(
                "worklogs.delete", Resource(tenant_id=tenant_id, type="worklog", id=worklog_id)
            )
        await run_in_threadpool(store.delete, worklog_id)
        return Response(status_code=204)

    routes = [
        Route("/healthz", healthz),
        Route("/whoami", whoami),
        Route("/worklogs", list_worklogs, methods=["GET"]),
        Route("/worklogs", create_worklog, methods=["POST"]),
        Route("/worklogs/export", export_worklogs, methods=["GET"]),
        Route("/exports", create_export, methods=["POST"]),
        Route("/exports/{token}", download_export, methods=["GET"]),
        Route("/worklogs/{id}", get_worklog, methods=["GET"]),
        Route("/worklogs/{id}", patch_worklog, methods=["PATCH"]),
        Route("/worklogs/{id}", delete_worklog, methods=["DELETE"]),
    ]
    middleware = [
        Middleware(
            TenancyMiddleware,
            verifier=verifier,
            tenants=tenants,
            region=region,
            public_paths=("/healthz",),
            events=events,
            startup_audit=startup_audit,
            authorizer=authorizer,
            routes=routes,
            support=support,
        )
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if authorizer is not None:
            authorizer.close()  # the decision log is written out before exit

    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
    )
