"""ServerFaults: a lost database connection is retried once for an idempotent request,
else answered 503 problem+json with Retry-After; any other escape is a 500 problem+json
with the request id, logged with its traceback; never a plain-text body."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import psycopg.errors
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy import current
from tenancy.errors import NotFound
from tenancy.faults import is_database_unavailable
from tenancy.identity import TokenVerifier
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer

pytestmark = pytest.mark.anyio


def terminated() -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL terminated the backend mid-query."""
    return OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating"))


def unreachable() -> OperationalError:
    """What SQLAlchemy raises when no connection can be made (no SQLSTATE)."""
    return OperationalError("connect", {}, psycopg.OperationalError("connection refused"))


class Flaky:
    """A handler that fails ``times`` times with ``error()``, then answers with the tenant."""

    def __init__(self, error: Any, times: int) -> None:
        self.error, self.left, self.calls, self.tenants = error, times, 0, []

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        self.tenants.append(current().tenant_id)
        await request.body()  # the body is readable on every run
        if self.left:
            self.left -= 1
            raise self.error()
        return JSONResponse({"tenant": current().tenant_id})


def app_with(
    handler: Any, verifier: TokenVerifier, registry: TenantRegistry, methods: list[str]
) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return await handler(request)  # type: ignore[no-any-return]

    return Starlette(
        routes=[Route("/work", endpoint, methods=methods)],
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(TenancyMiddleware, verifier=verifier, tenants=registry, region=REGION)
        ],
    )


async def call(app: Starlette, method: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as client:
        return await client.request(method, "/work", headers=bearer(token), content=b"{}")


@pytest.mark.parametrize("error", [terminated, unreachable])
async def test_an_idempotent_read_runs_once_more_under_the_same_tenant(
    error: Any,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    token_for: TokenFactory,
) -> None:
    flaky = Flaky(error, times=1)
    response = await call(app_with(flaky, verifier, registry, ["GET"]), "GET", token_for(acme))
    assert response.status_code == 200 and response.json() == {"tenant": acme.id}
    assert flaky.calls == 2 and flaky.tenants == [acme.id, acme.id]


@pytest.mark.parametrize(("method", "times"), [("POST", 1), ("GET", 2)])
async def test_otherwise_a_503_problem_with_retry_after(
    method: str,
    times: int,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    token_for: TokenFactory,
) -> None:
    flaky = Flaky(terminated, times=times)
    app = app_with(flaky, verifier, registry, [method])
    response = await call(app, method, token_for(acme))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"]
    assert response.json()["code"] == "database-unavailable"
    assert "terminating" not in response.text
    assert flaky.calls == (1 if method == "POST" else 2)  # a write is never run twice


async def test_any_other_escape_is_a_500_problem_logged_with_the_request_id(
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    token_for: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky(lambda: RuntimeError("secret internals"), times=1)
    app = app_with(flaky, verifier, registry, ["GET"])
    with caplog.at_level(logging.ERROR, logger="tenancy.faults"):
        response = await call(app, "GET", token_for(acme))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal-error"
    assert "secret internals" not in response.text
    request_id = response.headers["x-request-id"]
    [record] = [r for r in caplog.records if r.name == "tenancy.faults"]
    assert request_id in record.getMessage() and record.exc_info is not None
    assert flaky.calls == 1  # not a database fault: not run again


async def test_library_errors_keep_their_own_answers(
    verifier: TokenVerifier, registry: TenantRegistry, acme: Tenant, token_for: TokenFactory
) -> None:
    flaky = Flaky(lambda: NotFound("no such row"), times=1)
    response = await call(app_with(flaky, verifier, registry, ["GET"]), "GET", token_for(acme))
    assert response.status_code == 404 and response.json()["code"] == "not-found"
    assert flaky.calls == 1


def test_what_counts_as_the_database_being_unavailable() -> None:
    assert is_database_unavailable(terminated())
    assert is_database_unavailable(unreachable())
    invalidated = DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True)
    assert is_database_unavailable(invalidated)
    wrapped = RuntimeError("in a job")
    wrapped.__cause__ = terminated()
    assert is_database_unavailable(wrapped)  # raised from one
    # Statement faults are not: retrying would not help, and 503 would mislead.
    duplicate = IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup"))
    lock = OperationalError("SELECT", {}, psycopg.errors.LockNotAvailable("lock timeout"))
    assert not is_database_unavailable(duplicate)
    assert not is_database_unavailable(lock)
    assert not is_database_unavailable(ValueError("x"))


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [(terminated, 503, "database-unavailable"), (lambda: KeyError("bug"), 500, "internal-error")],
)
async def test_a_fault_while_admitting_the_request_is_a_problem_too(
    error: Any,
    status: int,
    code: str,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    token_for: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The tenant lookup (a cache miss reads the registry's table) meets the fault.
    def lookup(*args: Any, **kwargs: Any) -> None:
        raise error()

    monkeypatch.setattr(registry, "peek", lambda *a, **k: None)
    monkeypatch.setattr(registry, "get", lookup)
    flaky = Flaky(terminated, times=0)
    response = await call(app_with(flaky, verifier, registry, ["GET"]), "GET", token_for(acme))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert ("retry-after" in response.headers) == (status == 503)
    assert flaky.calls == 0  # the app never ran
