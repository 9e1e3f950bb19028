"""Edge and worklogs wired in-process: the user's tenant crosses the hop, nothing else does."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tenancy.context import bind
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.propagation import (
    ContextTokenMinter,
    ContextTokenVerifier,
    ServiceKeyring,
    trusted_service,
)
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples.edge.app import create_app as create_edge
from tenancy_examples.worklogs.app import create_app as create_worklogs
from tenancy_examples.worklogs.store import WorklogStore
from tests.conftest import REGION, TokenFactory, bearer
from tests.unit.propagation.conftest import DELEGABLE, EDGE, WORKLOGS, context_of, keys_of

pytestmark = pytest.mark.anyio
ENTRY = {"description": "review", "minutes": 30, "day": "2026-11-20"}


def isolated(app: ASGIApp) -> ASGIApp:
    """Run ``app`` in an empty contextvars.Context, as a separate process would."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.create_task(app(scope, receive, send), context=contextvars.Context())

    return call


@pytest.fixture
def backend_events() -> MemorySink:
    return MemorySink()


@pytest.fixture
def backend(
    store: WorklogStore,
    registry: TenantRegistry,
    edge_ring: ServiceKeyring,
    backend_events: MemorySink,
) -> Any:
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        services=[trusted_service(EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE)],
    )
    return create_worklogs(
        store=store, verifier=verifier, tenants=registry, region=REGION, events=backend_events
    )


@pytest.fixture
def edge(
    keys: JWKSKeySource, registry: TenantRegistry, edge_ring: ServiceKeyring, backend: Any
) -> Any:
    users = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"])]
    )
    return create_edge(
        verifier=users,
        tenants=registry,
        region=REGION,
        keyring=edge_ring,
        worklogs_url="http://worklogs",
        transport=httpx.ASGITransport(app=isolated(backend)),
    )


@pytest.fixture
async def via_edge(edge: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge), base_url="http://edge"
    ) as client:
        yield client


@pytest.fixture
async def direct(backend: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=backend), base_url="http://worklogs"
    ) as client:
        yield client


def user(token_for: TokenFactory, tenant: Tenant, **kwargs: Any) -> dict[str, str]:
    return bearer(token_for(tenant, audience="edge", **kwargs))


async def test_users_tenant_reaches_the_backend_handler(
    via_edge: httpx.AsyncClient, token_for: TokenFactory, acme: Tenant, globex: Tenant
) -> None:
    me = await via_edge.get("/whoami", headers={**user(token_for, acme), "X-Tenant-ID": globex.id})
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["tenant_id"], body["subject"], body["caller"]) == (acme.id, "alice", EDGE)
    assert body["scopes"] == []  # whoami needs no scope, so none was delegated
    assert body["request_id"] == me.headers["x-request-id"]  # one id across both hops

    created = await via_edge.post("/worklogs", json=ENTRY, headers=user(token_for, acme))
    assert created.status_code == 201 and created.json()["tenant_id"] == acme.id
    assert created.headers["location"].startswith("/worklogs/")
    theirs = await via_edge.get(
        f"/worklogs/{created.json()['id']}", headers=user(token_for, globex, sub="gina")
    )
    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == "application/problem+json"


async def test_users_token_sent_straight_to_the_backend_is_refused(
    direct: httpx.AsyncClient, token_for: TokenFactory, acme: Tenant, backend_events: MemorySink
) -> None:
    for audience in ("edge", WORKLOGS):
        response = await direct.get("/worklogs", headers=bearer(token_for(acme, audience=audience)))
        assert response.status_code == 401
        assert response.json()["type"] == "urn:tenancy:problem:invalid-token"
    assert {e.reason for e in backend_events.events} == {"not a context token"}


async def test_scope_the_user_lacks_is_refused_at_the_edge_and_nothing_is_written(
    via_edge: httpx.AsyncClient,
    token_for: TokenFactory,
    acme: Tenant,
    backend_events: MemorySink,
    store: WorklogStore,
) -> None:
    reader = user(token_for, acme, scopes=["worklogs:read"])
    refused = await via_edge.post("/worklogs", json=ENTRY, headers=reader)
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:tenancy:problem:insufficient-scope"
    assert backend_events.events == []  # the backend was never called
    with bind(context_of(acme)):
        assert store.list() == []


async def test_each_call_is_delegated_only_its_routes_scope(
    keys: JWKSKeySource,
    registry: TenantRegistry,
    edge_ring: ServiceKeyring,
    backend: Any,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    inner = httpx.ASGITransport(app=isolated(backend))

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            token = request.headers["authorization"].removeprefix("Bearer ")
            seen.append((request.method, jwt.decode(token, options={"verify_signature": False})))
            return await inner.handle_async_request(request)

    users = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"])]
    )
    edge = create_edge(
        verifier=users,
        tenants=registry,
        region=REGION,
        keyring=edge_ring,
        worklogs_url="http://worklogs",
        transport=Recording(),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge), base_url="http://edge"
    ) as client:
        headers = user(token_for, acme)  # the user holds read and write
        assert (await client.get("/worklogs", headers=headers)).status_code == 200
        assert (await client.post("/worklogs", json=ENTRY, headers=headers)).status_code == 201
    assert [(method, claims["scope"], claims["aud"]) for method, claims in seen] == [
        ("GET", "worklogs:read", WORKLOGS),
        ("POST", "worklogs:write", WORKLOGS),
    ]
    assert all(claims["exp"] - claims["iat"] <= 60 for _, claims in seen)


async def test_backend_down_is_a_502_problem(
    keys: JWKSKeySource,
    registry: TenantRegistry,
    edge_ring: ServiceKeyring,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    users = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"])]
    )
    edge = create_edge(
        verifier=users,
        tenants=registry,
        region=REGION,
        keyring=edge_ring,
        worklogs_url="http://worklogs",
        transport=httpx.MockTransport(refuse),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge), base_url="http://edge"
    ) as client:
        response = await client.get("/worklogs", headers=user(token_for, acme))
    assert response.status_code == 502
    assert response.json()["type"] == "urn:tenancy:problem:downstream-unavailable"


async def test_backend_503_reaches_the_client_with_its_retry_after(
    keys: JWKSKeySource,
    registry: TenantRegistry,
    edge_ring: ServiceKeyring,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    # The backend lost its database: the client must learn when to try again, and must
    # not see headers the edge does not forward.
    problem = {"type": "urn:tenancy:problem:database-unavailable", "status": 503}

    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            json=problem,
            headers={
                "content-type": "application/problem+json",
                "retry-after": "1",
                "x-backend-secret": "internal",
            },
        )

    users = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"])]
    )
    edge = create_edge(
        verifier=users,
        tenants=registry,
        region=REGION,
        keyring=edge_ring,
        worklogs_url="http://worklogs",
        transport=httpx.MockTransport(unavailable),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge), base_url="http://edge"
    ) as client:
        response = await client.get("/worklogs", headers=user(token_for, acme))
    assert response.status_code == 503
    assert response.json() == problem
    assert response.headers["retry-after"] == "1"
    assert "x-backend-secret" not in response.headers


async def test_edge_publishes_its_jwks_without_authentication(
    via_edge: httpx.AsyncClient, edge_ring: ServiceKeyring
) -> None:
    response = await via_edge.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert {k["kid"] for k in response.json()["keys"]} == {
        k["kid"] for k in edge_ring.jwks()["keys"]
    }
    assert all("d" not in k for k in response.json()["keys"])


async def test_suspended_tenant_is_refused_by_the_backend_too(
    direct: httpx.AsyncClient, edge_ring: ServiceKeyring, registry: TenantRegistry, acme: Tenant
) -> None:
    token = ContextTokenMinter(edge_ring).mint(
        context_of(acme), audience=WORKLOGS, scopes=["worklogs:read"]
    )
    registry.suspend(acme.id, actor="test", reason="unpaid")
    response = await direct.get("/worklogs", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:tenancy:problem:tenant-suspended"


async def test_aiohttp_backend_sends_a_context_token_and_reports_a_dead_backend(
    edge_ring: ServiceKeyring, ctx_verifier: ContextTokenVerifier, acme: Tenant
) -> None:
    import socket

    from aiohttp import web

    from tenancy.errors import DownstreamUnavailable
    from tenancy_examples.edge.backends import AiohttpBackend

    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"ok": True}, headers={"Location": "/x"})

    server = web.Application()
    server.router.add_get("/worklogs", handler)
    runner = web.AppRunner(server)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    backend = AiohttpBackend(
        f"http://127.0.0.1:{port}",
        minter=ContextTokenMinter(edge_ring),
        audience=WORKLOGS,
        timeout=2,
    )
    try:
        with bind(context_of(acme)):
            answer = await backend.forward(
                "GET", "/worklogs", "a=1", b"", {"accept": "application/json"}, ["worklogs:read"]
            )
        assert answer.status == 200 and answer.headers["location"] == "/x"
        token = seen[0]["Authorization"].removeprefix("Bearer ")
        assert ctx_verifier.verify(token).principal.scopes == {"worklogs:read"}
    finally:
        await runner.cleanup()
    with bind(context_of(acme)), pytest.raises(DownstreamUnavailable):
        await backend.forward("GET", "/worklogs", "", b"", {}, [])
    await backend.aclose()


async def test_edge_publishes_its_route_table_as_openapi(via_edge: httpx.AsyncClient) -> None:
    from tenancy.testing.probe import routes_from_openapi
    from tenancy_examples.edge.app import ROUTES

    response = await via_edge.get("/openapi.json")  # public: no token
    assert response.status_code == 200
    document = response.json()
    found = routes_from_openapi(document)  # what the probe reads: public paths left out
    assert {r.key for r in found} == {f"{method} {path}" for method, path, _ in ROUTES}
    assert {r.key: r.body for r in found if r.body}["POST /worklogs"]["minutes"] == 45
    scopes = {
        f"{m.upper()} {p}": op["security"]
        for p, ops in document["paths"].items()
        for m, op in ops.items()
    }
    assert scopes["GET /worklogs/export"] == [{"bearer": ["worklogs:export"]}]
    assert scopes["GET /openapi.json"] == scopes["GET /healthz"] == []
    listing = {q["name"]: q for q in document["paths"]["/worklogs"]["get"]["parameters"]}
    assert listing["limit"]["in"] == listing["cursor"]["in"] == "query"
    assert listing["limit"]["schema"]["maximum"] == 500
