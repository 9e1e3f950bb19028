"""The middleware through a small tenant-isolated app: the tenant comes from the token only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tenancy.authz import Authorizer, Decision, DecisionCache
from tenancy.context import current, current_or_none
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.identity.cache import VerifiedTokenCache
from tenancy.identity.verifier import VerifiedToken
from tenancy.middleware import TenancyMiddleware, context_of
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import AUDIENCE, REGION, TokenFactory, bearer
from tests.support.tenant_app import EntryStore

pytestmark = pytest.mark.anyio

ENTRY = {"description": "review", "minutes": 30}


async def create(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/worklogs", json={**ENTRY, **fields}, headers=bearer(token))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_missing_token_is_401_problem_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/worklogs")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="tenancy"'
    body = response.json()
    assert body["type"] == "urn:tenancy:problem:missing-credentials"
    assert body["status"] == 401


async def test_invalid_token_is_401_without_the_reason(
    client: httpx.AsyncClient, events: MemorySink
) -> None:
    response = await client.get("/worklogs", headers=bearer("a.b.c"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "detail" not in response.json()
    assert events.events[-1].action == "auth.refused"
    assert "malformed" in (events.events[-1].reason or "")


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token x"])
async def test_non_bearer_authorization_is_refused(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/worklogs", headers={"Authorization": authorization})
    assert response.status_code == 401


async def test_two_authorization_headers_are_refused(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, token_for: TokenFactory
) -> None:
    headers = [
        ("Authorization", f"Bearer {token_for(acme)}"),
        ("Authorization", f"Bearer {token_for(globex)}"),
    ]
    response = await client.get("/worklogs", headers=headers)
    assert response.status_code == 401


async def test_token_in_query_string_is_not_accepted(
    client: httpx.AsyncClient, acme: Tenant, token_for: TokenFactory
) -> None:
    response = await client.get("/worklogs", params={"access_token": token_for(acme)})
    assert response.status_code == 401


async def test_own_tenant_round_trip(
    client: httpx.AsyncClient, acme: Tenant, token_for: TokenFactory
) -> None:
    token = token_for(acme)
    created = await create(client, token)
    assert created["tenant_id"] == acme.id
    listing = await client.get("/worklogs", headers=bearer(token))
    assert [w["id"] for w in listing.json()["items"]] == [created["id"]]
    assert listing.headers["x-request-id"]


@pytest.mark.parametrize(
    "header",
    [
        "X-Tenant-ID",
        "x-tenant-id",
        "X_Tenant_Id",
        "Tenant",
        "X-Tenant",
        "X-Tenant-Slug",
        "Tenant-Id",
    ],
)
async def test_tenant_header_naming_another_tenant_changes_nothing(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, token_for: TokenFactory, header: str
) -> None:
    await create(client, token_for(globex, sub="gina"), description="globex secret")
    mine = await create(client, token_for(acme))
    for value in (globex.id, globex.slug):
        response = await client.get("/worklogs", headers={**bearer(token_for(acme)), header: value})
        assert response.status_code == 200
        assert [w["id"] for w in response.json()["items"]] == [mine["id"]]
        who = await client.get("/whoami", headers={**bearer(token_for(acme)), header: value})
        assert who.json()["tenant"] == "acme"


async def test_tenant_in_query_subdomain_or_baggage_changes_nothing(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, token_for: TokenFactory
) -> None:
    await create(client, token_for(globex), description="globex secret")
    response = await client.get(
        f"/worklogs?tenant={globex.slug}&tenant_id={globex.id}&tid={globex.id}",
        headers={
            **bearer(token_for(acme)),
            "Host": f"{globex.slug}.example.com",
            "baggage": f"tenant_id={globex.id},userId=alice",
            "tracestate": f"tenant@vendor={globex.id}",
        },
    )
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_other_tenants_row_is_404_and_unchanged(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, token_for: TokenFactory
) -> None:
    theirs = await create(client, token_for(globex), description="globex only")
    path = f"/worklogs/{theirs['id']}"
    attacker = bearer(token_for(acme))
    missing = await client.get("/worklogs/00000000-0000-4000-8000-000000000000", headers=attacker)
    for response in (
        await client.get(path, headers=attacker),
        await client.patch(path, json={"minutes": 1}, headers=attacker),
        await client.delete(path, headers=attacker),
    ):
        assert response.status_code == 404
        assert response.json() == {**missing.json(), "instance": path}
    still = await client.get(path, headers=bearer(token_for(globex)))
    assert still.json() == theirs


async def test_missing_scope_is_403(
    client: httpx.AsyncClient, acme: Tenant, token_for: TokenFactory
) -> None:
    reader = bearer(token_for(acme, scopes=["worklogs:read"]))
    response = await client.post("/worklogs", json=ENTRY, headers=reader)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient-scope"
    assert (await client.get("/worklogs", headers=reader)).json()["items"] == []


async def test_suspended_and_offboarded_tenants_are_refused_and_reactivation_works(
    client: httpx.AsyncClient, acme: Tenant, registry: TenantRegistry, token_for: TokenFactory
) -> None:
    token = bearer(token_for(acme))
    assert (await client.get("/worklogs", headers=token)).status_code == 200
    registry.suspend(acme.id, actor="ops", reason="unpaid invoice")
    suspended = await client.get("/worklogs", headers=token)
    assert suspended.status_code == 403
    assert suspended.json()["code"] == "tenant-suspended"
    registry.activate(acme.id, actor="ops", reason="paid")
    assert (await client.get("/worklogs", headers=token)).status_code == 200
    registry.offboard(acme.id, actor="ops", reason="contract ended")
    offboarded = await client.get("/worklogs", headers=token)
    assert offboarded.status_code == 403
    assert offboarded.json()["code"] == "tenant-offboarded"


async def test_tenant_homed_in_another_region_is_refused(
    client: httpx.AsyncClient, registry: TenantRegistry, token_for: TokenFactory
) -> None:
    faraway = registry.provision("initech", region="us-east-1")
    response = await client.get("/worklogs", headers=bearer(token_for(faraway)))
    assert response.status_code == 403
    assert response.json()["code"] == "wrong-region"


async def test_token_for_unknown_tenant_is_401(client: httpx.AsyncClient, issuer: Any) -> None:
    token = issuer.mint(
        tenant_id="00000000-0000-4000-8000-000000000000",
        subject="x",
        audience="worklogs",
        scopes=["worklogs:read"],
    )
    assert (await client.get("/worklogs", headers=bearer(token))).status_code == 401


async def test_health_is_public_and_binds_no_context(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert "x-request-id" not in response.headers


# -- a bare app to observe exactly what the middleware hands downstream ----------------


def echo_app(verifier: TokenVerifier, registry: TenantRegistry, **options: Any) -> Any:
    async def echo(request: Request) -> JSONResponse:
        ctx = current_or_none()
        return JSONResponse(
            {
                "headers": sorted(k for k, _ in request.headers.items()),
                "baggage": request.headers.get("baggage"),
                "tenant": ctx.tenant_slug if ctx else None,
                "scope_tenant": getattr(context_of(request.scope), "tenant_id", None),
            }
        )

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"tenant": current().tenant_slug})
        await websocket.close()

    inner = Starlette(routes=[Route("/{path:path}", echo), WebSocketRoute("/ws", ws)])
    return TenancyMiddleware(
        inner,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        public_paths=("/public",),
        **options,
    )


async def test_tenant_naming_headers_are_stripped_before_the_app(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = echo_app(verifier, registry, strip_headers=["X-Org"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for path in ("/anything", "/public"):
            response = await c.get(
                path,
                headers={
                    **bearer(token_for(acme)),
                    "X-Tenant-ID": "globex",
                    "x_tenant_id": "globex",
                    "X-Org": "globex",
                    "baggage": "tenantId=globex, session=1",
                    "X-Other": "kept",
                },
            )
            body = response.json()
            assert not any("tenant" in h for h in body["headers"])
            assert "x-org" not in body["headers"]
            assert "x-other" in body["headers"]
            assert body["baggage"] == "session=1"
    assert body["tenant"] is None  # public path: nothing bound


async def test_context_is_also_in_the_asgi_scope(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = echo_app(verifier, registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = (await c.get("/x", headers=bearer(token_for(acme)))).json()
    assert body["tenant"] == "acme"
    assert body["scope_tenant"] == acme.id


async def test_unknown_or_other_tenant_slug_in_path_is_the_same_404(
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
) -> None:
    app = echo_app(verifier, registry, tenant_path_prefix="/t/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        token = bearer(token_for(acme))
        assert (await c.get("/t/acme/worklogs", headers=token)).status_code == 200
        other = await c.get("/t/globex/worklogs", headers=token)
        unknown = await c.get("/t/nosuch/worklogs", headers=token)
    assert other.status_code == unknown.status_code == 404
    assert {k: v for k, v in other.json().items() if k != "instance"} == {
        k: v for k, v in unknown.json().items() if k != "instance"
    }


async def websocket_session(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """Drive one WebSocket connection through the raw ASGI interface; return what was sent."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": headers,
        "scheme": "ws",
        "server": ("t", 80),
        "client": ("c", 1),
        "root_path": "",
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    await app(scope, receive, send)
    return sent


async def test_websocket_needs_a_token_and_sees_its_tenant(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = echo_app(verifier, registry)
    refused = await websocket_session(app, [])
    assert refused == [{"type": "websocket.close", "code": 1008}]
    auth = [(b"authorization", f"Bearer {token_for(acme)}".encode())]
    accepted = await websocket_session(app, auth)
    assert accepted[0]["type"] == "websocket.accept"
    assert accepted[1] == {"type": "websocket.send", "text": '{"tenant":"acme"}'}


def test_middleware_refuses_a_bad_configuration(
    verifier: TokenVerifier, registry: TenantRegistry
) -> None:
    from tenancy.errors import ConfigurationError, InvalidTenantField

    with pytest.raises(InvalidTenantField):
        TenancyMiddleware(Starlette(), verifier=verifier, tenants=registry, region="Mars")
    with pytest.raises(ConfigurationError):
        TenancyMiddleware(
            Starlette(),
            verifier=object(),  # type: ignore[arg-type]
            tenants=registry,
            region=REGION,
        )
    with pytest.raises(ConfigurationError):
        TenancyMiddleware(
            Starlette(), verifier=verifier, tenants=registry, region=REGION, tenant_path_prefix="t"
        )


async def test_store_refuses_to_run_without_a_context(store: EntryStore) -> None:
    from tenancy.errors import NoTenantContext

    with pytest.raises(NoTenantContext):
        store.list()


# -- each cache is asked once per request ----------------------------------------------


class CountingTokenCache(VerifiedTokenCache[VerifiedToken]):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def get(self, digest: bytes, now: float) -> VerifiedToken | None:
        self.lookups += 1
        return super().get(digest, now)


class CountingDecisionCache(DecisionCache):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def get(self, key: Any, now: float) -> Decision | None:
        self.lookups += 1
        return super().get(key, now)


class AllowAll:
    name = "allow-all"
    revision = 1

    def decide(self, input: Mapping[str, Any]) -> Decision:
        return Decision(allow=True)


async def test_each_cache_is_asked_once_per_request_on_a_miss_and_on_a_hit(
    keys: JWKSKeySource, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    tokens, decisions = CountingTokenCache(), CountingDecisionCache()
    verifier = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=AUDIENCE, keys=keys, algorithms=["EdDSA"])],
        cache=tokens,
    )

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"tenant": current().tenant_slug})

    inner = Starlette(routes=[Route("/x", ok)])
    app = TenancyMiddleware(
        inner,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        authorizer=Authorizer(AllowAll(), service="x", cache=decisions),
        routes=inner.routes,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        headers = bearer(token_for(acme))
        # The first request misses both caches (and fills them), the second hits both.
        for requests in (1, 2):
            response = await c.get("/x", headers=headers)
            assert response.json() == {"tenant": "acme"}
            assert (tokens.lookups, decisions.lookups) == (requests, requests)
    assert len(tokens) == len(decisions) == 1
