"""Demonstrates the edge: it verifies users and calls backends with context tokens only.

The user's access token never leaves the edge. For each call to the worklogs backend
the edge first requires the scope the route needs, then mints a context token for the
``worklogs`` audience carrying that one scope (``ContextAuth``), and forwards only the
request's method, path, query, body and content type. A scope the user lacks is refused
here (403) and nothing is sent; a body over ``MAX_BODY_BYTES`` is refused here (413) before
it is all read; a backend that does not answer is a 502 problem. Whatever the backend
answers (its own 413, 415 or 422 for a body it refuses) reaches the client as it is.
``tenancy_examples/edge/backends.py`` shows the call with aiohttp (default) and with httpx.

Routes: ``GET /healthz``, ``GET /.well-known/jwks.json`` (the keys backends use to verify
the edge) and ``GET /openapi.json`` (the route table, for ``tenancy probe``), all public;
``GET /whoami``, ``GET/POST /worklogs``, ``GET /worklogs/export``,
``GET/PATCH/DELETE /worklogs/{id}``, ``POST /exports``, ``GET /exports/{token}``. With an
``authorizer`` the policy decides each route at the edge too (service ``edge`` in the
route data).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy.authn import Authenticator
from tenancy.authz import Authorizer
from tenancy.context import require_scope
from tenancy.errors import PayloadTooLarge
from tenancy.events import EventSink
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.propagation import ContextTokenMinter, ServiceKeyring
from tenancy.support import SupportAccess
from tenancy.tenants import TenantRegistry
from tenancy_examples.edge.backends import AiohttpBackend, Backend, HttpxBackend
from tenancy_examples.edge.openapi import openapi_document

BACKEND = "worklogs"
READ = "worklogs:read"
WRITE = "worklogs:write"
EXPORT = "worklogs:export"
JWKS_PATH = "/.well-known/jwks.json"
OPENAPI_PATH = "/openapi.json"
PUBLIC_PATHS = ("/healthz", JWKS_PATH, OPENAPI_PATH)
# The edge's own bound on what it holds in memory per request; each backend route
# enforces its own, lower limit (worklogs: 16 KiB).
MAX_BODY_BYTES = 64 * 1024

# Each public route and the one scope the backend call needs (None: identity only).
ROUTES: tuple[tuple[str, str, str | None], ...] = (
    ("GET", "/whoami", None),
    ("GET", "/worklogs", READ),
    ("POST", "/worklogs", WRITE),
    ("GET", "/worklogs/export", EXPORT),
    ("POST", "/exports", EXPORT),
    ("GET", "/exports/{token}", EXPORT),
    ("GET", "/worklogs/{id}", READ),
    ("PATCH", "/worklogs/{id}", WRITE),
    ("DELETE", "/worklogs/{id}", WRITE),
)
FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
# The edge sets its own x-request-id: the backend answers with the same id (it came in
# the context token), so logs of both services correlate.
FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "location",
    "content-disposition",
    "cache-control",
    "referrer-policy",
    "x-content-type-options",
    "retry-after",  # a backend's 503 tells the client when to try again
)


async def bounded_body(request: Request) -> bytes:
    """The request body, refused (``PayloadTooLarge``) once it exceeds ``MAX_BODY_BYTES``:
    on ``Content-Length`` before reading, otherwise as soon as the chunks pass it."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    *,
    verifier: Authenticator,
    tenants: TenantRegistry,
    region: str,
    keyring: ServiceKeyring,
    worklogs_url: str,
    events: EventSink | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 10.0,
    authorizer: Authorizer | None = None,
    support: SupportAccess | None = None,
) -> Starlette:
    """Build the edge in front of the worklogs backend at ``worklogs_url``.

    With an httpx ``transport`` (tests: an in-process backend) calls go through httpx and
    ``ContextAuth``; otherwise through aiohttp and ``context_headers``.
    """
    minter = ContextTokenMinter(keyring)
    backend: Backend = (
        HttpxBackend(
            worklogs_url, minter=minter, audience=BACKEND, transport=transport, timeout=timeout
        )
        if transport is not None
        else AiohttpBackend(worklogs_url, minter=minter, audience=BACKEND, timeout=timeout)
    )

    def forward(scope: str | None) -> Callable[[Request], Awaitable[Response]]:
        scopes = [scope] if scope else []

        async def endpoint(request: Request) -> Response:
            if scope is not None:
                require_scope(scope)  # refused here, before any token is minted
            headers = {
                k: v for k in FORWARDED_REQUEST_HEADERS if (v := request.headers.get(k)) is not None
            }
            answer = await backend.forward(
                request.method,
                request.url.path,
                request.url.query,
                await bounded_body(request),
                headers,
                scopes,
            )
            kept = {
                k: v for k in FORWARDED_RESPONSE_HEADERS if (v := answer.headers.get(k)) is not None
            }
            return Response(answer.body, status_code=answer.status, headers=kept)

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def jwks(request: Request) -> Response:
        return JSONResponse(keyring.jwks(), headers={"cache-control": "max-age=60"})

    document = openapi_document(ROUTES, public=PUBLIC_PATHS)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.aclose()
        if authorizer is not None:
            authorizer.close()  # the decision log is written out before exit

    routes = [Route("/healthz", healthz), Route(JWKS_PATH, jwks), Route(OPENAPI_PATH, openapi)]
    routes += [Route(path, forward(scope), methods=[method]) for method, path, scope in ROUTES]
    middleware = [
        Middleware(
            TenancyMiddleware,
            verifier=verifier,
            tenants=tenants,
            region=region,
            public_paths=PUBLIC_PATHS,
            events=events,
            authorizer=authorizer,
            routes=routes,
            support=support,
        )
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
    )
