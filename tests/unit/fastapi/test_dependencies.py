"""tenancy.fastapi on small inline apps: the context comes from the middleware only, scopes
and policy decisions refuse as problem+json, and OpenAPI shows what each operation needs."""

import asyncio
import subprocess
import sys
from collections.abc import Mapping
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Security
from pydantic import BaseModel

from tenancy.authz import (
    Authorizer,
    Decision,
    EmbeddedRego,
    MemoryDecisionLog,
    PolicyBundle,
    Resource,
)
from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import ConfigurationError
from tenancy.fastapi import authorize, install, require_scopes, tenant_context, tenant_session
from tenancy.identity import TokenVerifier
from tenancy.middleware import TenancyMiddleware
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer

SERVICE = "notes"
POLICY = {
    "tenancy": {
        "routes": {
            SERVICE: {
                "GET /me": {"scopes": []},
                "GET /notes": {"scopes": ["notes:read"]},
                "POST /notes": {"scopes": ["notes:read"]},
                "DELETE /notes/{owner}": {"scopes": ["notes:read"]},
                "GET /boom": {"scopes": []},
                "GET /teapot": {"scopes": []},
                "GET /x": {"scopes": []},
            }
        },
        "actions": {"notes.delete": {"scopes": ["notes:delete"]}},
        # A person's scopes are their token's that their roles grant too.
        "default_roles": {"owner": ["notes:read", "notes:delete"], "reader": ["notes:read"]},
    }
}


class Note(BaseModel):
    text: str


class BrokenEngine:
    """A decision point that fails: no decision, so the action is refused."""

    name = "broken"
    revision = 0

    def decide(self, input: Mapping[str, Any]) -> Decision:
        raise RuntimeError("engine down")


def notes_app(
    verifier: TokenVerifier | None,
    registry: TenantRegistry,
    *,
    authorizer: Authorizer | None = None,
) -> FastAPI:
    """Routes that take each dependency; ``verifier=None``: no middleware in front."""
    app = FastAPI()
    install(app)

    async def owner(owner: str) -> Resource:
        return Resource(tenant_id=owner, type="note", id="n1")

    @app.get("/me")
    async def me(ctx: Annotated[TenantContext, Depends(tenant_context)]) -> dict[str, str]:
        return {"tenant": ctx.tenant_slug}

    @app.get("/notes")
    async def notes(
        ctx: Annotated[TenantContext, Security(require_scopes, scopes=["notes:read"])],
    ) -> list[str]:
        return []

    @app.post("/notes", status_code=201)
    async def add(
        note: Note,
        ctx: Annotated[TenantContext, Security(require_scopes, scopes=["notes:read"])],
    ) -> Note:
        return note

    @app.delete("/notes/{owner}", status_code=204)
    async def delete(
        decision: Annotated[Decision, Depends(authorize("notes.delete", resource=owner))],
    ) -> None:
        assert decision.allow

    @app.get("/boom")
    async def boom(ctx: Annotated[TenantContext, Depends(tenant_context)]) -> None:
        raise RuntimeError("a bug")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "I'm a teapot")

    if verifier is not None:
        app.add_middleware(
            TenancyMiddleware,
            verifier=verifier,
            tenants=registry,
            region=REGION,
            authorizer=authorizer,
            routes=app.routes,
            public_paths=("/openapi.json",),
        )
    return app


def policy_authorizer(log: MemoryDecisionLog | None = None) -> Authorizer:
    bundle = PolicyBundle.from_directory(data=[POLICY])
    return Authorizer(EmbeddedRego(bundle), service=SERVICE, bundle=bundle, log=log)


def call(app: FastAPI, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://notes") as client:
            headers = bearer(token) if token else {}
            return await client.request(method, path, headers=headers, **kw)

    return asyncio.run(go())


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:tenancy:problem:{code}" and body["status"] == status
    return body


# -- the context ------------------------------------------------------------------------


def test_the_context_is_the_middlewares(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = notes_app(verifier, registry)
    assert call(app, "GET", "/me", token_for(acme)).json() == {"tenant": "acme"}
    problem(call(app, "GET", "/me"), 401, "missing-credentials")  # refused before any handler


def test_without_the_middleware_nothing_is_served(
    registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = notes_app(None, registry)
    # A valid token means nothing here: the dependency never reads the header itself.
    body = problem(call(app, "GET", "/me", token_for(acme)), 500, "no-tenant-context")
    assert body["instance"] == "/me" and "detail" not in body


def test_a_context_bound_by_other_code_is_not_the_middlewares(
    registry: TenantRegistry, acme: Tenant
) -> None:
    app = notes_app(None, registry)
    ctx = TenantContext(
        tenant_id=acme.id,
        tenant_slug="acme",
        region=REGION,
        principal=Principal(issuer="x", tenant_id=acme.id, subject="s"),
        request_id="r",
    )
    with bind(ctx):  # bound around the app, as a hand-written middleware might
        problem(call(app, "GET", "/me"), 500, "no-tenant-context")


# -- scopes -----------------------------------------------------------------------------


def test_scopes_allow_and_refuse(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = notes_app(verifier, registry)
    assert call(app, "GET", "/notes", token_for(acme, scopes=["notes:read"])).json() == []
    body = problem(
        call(app, "GET", "/notes", token_for(acme, scopes=["other"])), 403, "insufficient-scope"
    )
    assert body["detail"] == "this operation needs the scope 'notes:read'"


def test_openapi_lists_each_operations_scopes(
    verifier: TokenVerifier, registry: TenantRegistry
) -> None:
    document = notes_app(verifier, registry).openapi()
    assert document["components"]["securitySchemes"]["tenancy"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token verified by TenancyMiddleware.",
    }
    paths = document["paths"]
    assert paths["/notes"]["get"]["security"] == [{"tenancy": ["notes:read"]}]
    assert paths["/notes"]["post"]["security"] == [{"tenancy": ["notes:read"]}]
    assert paths["/me"]["get"]["security"] == [{"tenancy": []}]
    assert "security" not in paths["/teapot"]["get"]  # takes no tenancy dependency


# -- policy decisions -------------------------------------------------------------------


def test_authorize_allows_and_denies_on_the_resource(
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
) -> None:
    log = MemoryDecisionLog()
    app = notes_app(verifier, registry, authorizer=policy_authorizer(log))
    allowed = token_for(acme, scopes=["notes:read", "notes:delete"], roles=["owner"])
    assert call(app, "DELETE", f"/notes/{acme.id}", allowed).status_code == 204
    named = [r.input()["resource"] for r in log.records if "name" in r.input()["action"]]
    assert named == [{"tenant_id": acme.id, "type": "note", "id": "n1"}]
    # Another tenant's resource: denied, whatever the scopes.
    problem(call(app, "DELETE", f"/notes/{globex.id}", allowed), 403, "access-denied")
    # The route is allowed, the action's scope is not granted by the role: denied.
    lacking = token_for(acme, scopes=["notes:read", "notes:delete"], roles=["reader"])
    problem(call(app, "DELETE", f"/notes/{acme.id}", lacking), 403, "access-denied")


def test_authorize_fails_closed_without_a_decision(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    token = token_for(acme, scopes=["notes:read", "notes:delete"])
    without_authorizer = notes_app(verifier, registry)
    problem(
        call(without_authorizer, "DELETE", f"/notes/{acme.id}", token), 503, "decision-unavailable"
    )
    bundle = PolicyBundle.from_directory(data=[POLICY])
    failing = Authorizer(BrokenEngine(), service=SERVICE, bundle=bundle, cache=None)
    broken = notes_app(verifier, registry, authorizer=failing)
    problem(call(broken, "GET", "/me", token), 503, "decision-unavailable")


def test_authorize_refuses_a_resource_dependency_that_returns_no_resource(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = FastAPI()
    install(app)

    async def nothing() -> None:
        return None

    @app.get("/x")
    async def x(
        d: Annotated[Decision, Depends(authorize("notes.delete", resource=nothing))],
    ) -> None:
        pass

    app.add_middleware(
        TenancyMiddleware,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        authorizer=policy_authorizer(),
        routes=app.routes,
    )
    problem(call(app, "GET", "/x", token_for(acme)), 500, "configuration-error")
    with pytest.raises(ConfigurationError):
        authorize("")


def test_tenant_session_refuses_an_unscoped_sessionmaker() -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(ConfigurationError, match="AsyncTenantSession"):
        tenant_session(async_sessionmaker(engine, class_=AsyncSession))  # type: ignore[arg-type]
    asyncio.run(engine.dispose())


# -- problem+json for every error -------------------------------------------------------


def test_every_error_is_a_problem(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    app = notes_app(verifier, registry)
    token = token_for(acme, scopes=["notes:read"])
    invalid = problem(call(app, "POST", "/notes", token, json={"txt": 1}), 422, "invalid-request")
    assert invalid["errors"] == {"text": "Field required"}
    assert problem(call(app, "GET", "/boom", token), 500, "internal-error") == {
        "type": "urn:tenancy:problem:internal-error",
        "title": "Internal error",
        "status": 500,
        "code": "internal-error",
        "instance": "/boom",
    }  # nothing of the exception is shown
    teapot = call(app, "GET", "/teapot", token)
    assert teapot.status_code == 418
    assert teapot.headers["content-type"] == "application/problem+json"
    assert call(app, "GET", "/nowhere", token).status_code == 404  # the middleware's NotFound


def test_importing_tenancy_does_not_import_fastapi() -> None:
    code = (
        "import sys, tenancy, tenancy.scoping, tenancy.middleware; print('fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_plugin_reads_a_fastapi_apps_routes_from_its_openapi(
    verifier: TokenVerifier, registry: TenantRegistry
) -> None:
    from tenancy.testing.plugin import discover_routes

    app = notes_app(verifier, registry)

    @app.get("/healthz", openapi_extra={"security": []})
    async def healthz() -> None:
        pass

    found = {r.key: r for r in discover_routes(app, exclude=("/teapot",))}
    # Not the document's own routes (/openapi.json, /docs), not the public /healthz.
    assert set(found) == {
        "GET /me",
        "GET /notes",
        "POST /notes",
        "DELETE /notes/{owner}",
        "GET /boom",
    }
    assert found["POST /notes"].body == {}  # a JSON body, no example given
