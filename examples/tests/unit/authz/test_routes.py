"""Every route of the example services, decided by the shipped policy through HTTP.

For each route: allowed with the right scope (and role, and MFA where the scope is
sensitive), denied without the scope, denied without MFA where required, and another
tenant's object is never reachable. The route table is read from the apps and must
match the policy data exactly, so a new route cannot ship undeclared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from tenancy.authz import Authorizer, EmbeddedRego, PolicyBundle
from tenancy.events import MemorySink
from tenancy.exports import ExportService
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.propagation import ContextTokenVerifier, ServiceKeyring, trusted_service
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples import policy
from tenancy_examples.edge.app import create_app as create_edge
from tenancy_examples.worklogs.app import create_app as create_worklogs
from tenancy_examples.worklogs.personal_data import WORKLOG_FIELDS
from tenancy_examples.worklogs.store import WorklogStore
from tests.conftest import REGION, TokenFactory, bearer
from tests.unit.propagation.conftest import keys_of

pytestmark = pytest.mark.anyio
BUNDLE = policy.bundle()
ROUTES: dict[str, dict[str, dict[str, list[str]]]] = BUNDLE.get(("tenancy", "routes"))
SENSITIVE = set(BUNDLE.get(("tenancy", "sensitive_scopes")))
PUBLIC = {"/healthz", "/.well-known/jwks.json", "/openapi.json"}
ENTRY = {"description": "plan", "minutes": 30, "day": "2026-11-20"}
EVERY_SCOPE = ["worklogs:read", "worklogs:write", "worklogs:export"]


def declared(app: Any) -> set[str]:
    return {
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, Route) and route.path not in PUBLIC
        for method in (route.methods or ()) - {"HEAD"}
    }


def cases() -> list[tuple[str, str, str, list[str]]]:
    return [
        (service, *key.split(" ", 1), spec["scopes"])
        for service in ("worklogs", "edge")
        for key, spec in sorted(ROUTES[service].items())
    ]


@pytest.fixture
def bundle() -> PolicyBundle:
    return policy.bundle()


@pytest.fixture
def edge_ring() -> ServiceKeyring:
    return ServiceKeyring.generate("edge")


@pytest.fixture
def exports(
    engine: Any,
    store: WorklogStore,
    registry: TenantRegistry,
    acme: Tenant,
    globex: Tenant,
    tmp_path: Any,
) -> ExportService:
    from tenancy.exports import create_schema
    from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys

    keys = TenantKeys(
        engine, [LocalKeyProvider(tmp_path / "keks.json", root=RootKey(bytes(range(32))))]
    )
    keys.create_schema()
    for tenant in (acme, globex):
        keys.provision(tenant.id)
    create_schema(engine)
    return ExportService(
        engine,
        source=store.list,
        fields=WORKLOG_FIELDS,
        keys=keys,
        signing_key=bytes(32) + b"x",
    )


@pytest.fixture
def services(
    bundle: PolicyBundle,
    store: WorklogStore,
    registry: TenantRegistry,
    keys: JWKSKeySource,
    edge_ring: ServiceKeyring,
    exports: ExportService,
) -> dict[str, Any]:
    worklogs = create_worklogs(
        store=store,
        tenants=registry,
        region=REGION,
        events=MemorySink(),
        exports=exports,
        verifier=ContextTokenVerifier(
            audience="worklogs",
            services=[trusted_service("edge", keys=keys_of(edge_ring), scopes=EVERY_SCOPE)],
        ),
        authorizer=Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle),
    )
    edge = create_edge(
        verifier=TokenVerifier(
            [trusted_issuer(DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"])]
        ),
        tenants=registry,
        region=REGION,
        keyring=edge_ring,
        worklogs_url="http://worklogs",
        transport=httpx.ASGITransport(app=worklogs),
        authorizer=Authorizer(EmbeddedRego(bundle), service="edge", bundle=bundle),
    )
    return {"worklogs": worklogs, "edge": edge}


@pytest.fixture
async def edge_client(services: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=services["edge"]), base_url="http://edge"
    ) as client:
        yield client


# What each route must need: pinned here, so a loosened policy file fails this test.
EXPECTED_SCOPES = {
    "GET /whoami": [],
    "GET /worklogs": ["worklogs:read"],
    "POST /worklogs": ["worklogs:write"],
    "GET /worklogs/export": ["worklogs:export"],
    "GET /worklogs/{id}": ["worklogs:read"],
    "PATCH /worklogs/{id}": ["worklogs:write"],
    "DELETE /worklogs/{id}": ["worklogs:write"],
    "POST /exports": ["worklogs:export"],
    "GET /exports/{token}": ["worklogs:export"],
}


def test_every_route_is_declared_in_the_policy_and_nothing_else(services: dict[str, Any]) -> None:
    for name, app in services.items():
        assert declared(app) == set(ROUTES[name]), name
        assert {k: v["scopes"] for k, v in ROUTES[name].items()} == EXPECTED_SCOPES
    assert "worklogs:export" in SENSITIVE


class Users:
    def __init__(self, token_for: TokenFactory, acme: Tenant, globex: Tenant) -> None:
        self.token_for, self.acme, self.globex = token_for, acme, globex

    def headers(
        self,
        *,
        tenant: Tenant | None = None,
        scopes: list[str] = EVERY_SCOPE,
        roles: tuple[str, ...] = ("admin",),
        mfa: bool = True,
    ) -> dict[str, str]:
        return bearer(
            self.token_for(
                tenant or self.acme, audience="edge", scopes=scopes, roles=list(roles), mfa=mfa
            )
        )


@pytest.fixture
def users(token_for: TokenFactory, acme: Tenant, globex: Tenant) -> Users:
    return Users(token_for, acme, globex)


async def call(
    client: httpx.AsyncClient,
    method: str,
    route: str,
    headers: dict[str, str],
    worklog_id: str,
    token: str = "",
) -> httpx.Response:
    path = route.replace("{id}", worklog_id).replace("{token}", token)
    body = {"description": "changed"} if method == "PATCH" else ENTRY
    kwargs: dict[str, Any] = {"json": body} if method in ("POST", "PATCH") else {}
    return await client.request(method, path, headers=headers, **kwargs)


async def export_link(client: httpx.AsyncClient, users: Users, tenant: Tenant) -> str:
    made = await client.post(
        "/exports", json={"format": "json"}, headers=users.headers(tenant=tenant)
    )
    assert made.status_code == 201, made.text
    return str(made.json()["download"]).removeprefix("/exports/")


async def seed(client: httpx.AsyncClient, users: Users, tenant: Tenant) -> str:
    created = await client.post("/worklogs", json=ENTRY, headers=users.headers(tenant=tenant))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.mark.parametrize(
    ("method", "route", "scopes"),
    [c[1:] for c in cases() if c[0] == "edge"],
    ids=[f"{c[1]} {c[2]}" for c in cases() if c[0] == "edge"],
)
async def test_route_through_edge_and_worklogs(
    edge_client: httpx.AsyncClient, users: Users, method: str, route: str, scopes: list[str]
) -> None:
    mine = await seed(edge_client, users, users.acme)
    theirs = await seed(edge_client, users, users.globex)
    my_link = their_link = ""
    if "{token}" in route:  # a download needs a link: made by an admin with MFA
        my_link = await export_link(edge_client, users, users.acme)
        their_link = await export_link(edge_client, users, users.globex)

    # Allowed with exactly the route's scopes (and MFA where they are sensitive).
    needs_mfa = bool(SENSITIVE & set(scopes))
    allowed = await call(
        edge_client, method, route, users.headers(scopes=scopes, mfa=needs_mfa), mine, my_link
    )
    assert allowed.status_code in (200, 201, 204), allowed.text

    # Denied without the scope (when the route needs one).
    if scopes:
        others = [s for s in EVERY_SCOPE if s not in scopes]
        denied = await call(edge_client, method, route, users.headers(scopes=others), mine, my_link)
        assert denied.status_code == 403
        assert denied.json()["type"] == "urn:tenancy:problem:access-denied"

    # Denied by role even when the token carries the scope.
    if scopes:
        viewer_only = await call(
            edge_client,
            method,
            route,
            users.headers(scopes=scopes, roles=("guest",), mfa=True),
            mine,
            my_link,
        )
        assert viewer_only.status_code == 403

    # Denied without MFA where the scope is sensitive.
    if needs_mfa:
        no_mfa = await call(
            edge_client, method, route, users.headers(scopes=scopes, mfa=False), mine, my_link
        )
        assert no_mfa.status_code == 403

    # Another tenant: its object is "not found", and its data never shows up.
    if "{id}" in route:
        foreign = await call(edge_client, method, route, users.headers(), theirs)
        assert foreign.status_code == 404
        still = await edge_client.get(
            f"/worklogs/{theirs}", headers=users.headers(tenant=users.globex)
        )
        assert still.status_code == 200 and still.json()["description"] == ENTRY["description"]
    elif "{token}" in route:  # another tenant's link is "not found", and says nothing
        foreign = await call(edge_client, method, route, users.headers(), mine, their_link)
        assert foreign.status_code == 404
        assert theirs not in allowed.text
    elif route == "/exports":
        assert theirs not in allowed.text
    elif method == "GET" and route != "/whoami":
        listing = await call(edge_client, method, route, users.headers(), mine)
        assert theirs not in {item["id"] for item in listing.json()["items"]}


@pytest.mark.parametrize(
    ("method", "route", "scopes"),
    [c[1:] for c in cases() if c[0] == "worklogs"],
    ids=[f"{c[1]} {c[2]}" for c in cases() if c[0] == "worklogs"],
)
async def test_backend_decides_each_route_on_its_own(
    services: dict[str, Any],
    edge_ring: ServiceKeyring,
    users: Users,
    method: str,
    route: str,
    scopes: list[str],
) -> None:
    # The backend does not trust the edge's decision: a context token carrying a scope the
    # user's roles do not grant is refused by the backend's own policy.
    from tenancy.context import Principal, TenantContext
    from tenancy.propagation import ContextTokenMinter

    acme = users.acme
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=acme.id,
        subject="alice",
        roles=frozenset({"guest"}),
        scopes=frozenset(EVERY_SCOPE),
    )
    ctx = TenantContext(acme.id, acme.slug, REGION, principal, "rid")
    token = ContextTokenMinter(edge_ring).mint(ctx, audience="worklogs", scopes=scopes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=services["worklogs"]), base_url="http://worklogs"
    ) as client:
        response = await call(
            client, method, route, bearer(token), "00000000-0000-4000-8000-000000000000", "any-link"
        )
    if scopes:
        assert response.status_code == 403
    else:
        assert response.status_code == 200
