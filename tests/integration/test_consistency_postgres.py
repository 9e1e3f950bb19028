"""Consistency mode on PostgreSQL: the RLS setting is read back from the database.

Each test runs on a service using ``TenantSession`` (in a thread pool) and on one using
``AsyncTenantSession`` on each async driver (psycopg async, asyncpg) in its handlers.
The app role is NOSUPERUSER NOBYPASSRLS and the table is under forced RLS, so these show
what the read-back adds: SQL that re-points the transaction's setting at another tenant
passes RLS (the setting is what RLS trusts), but not the consistency check, and the
refused commit leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy import consistency
from tenancy.context import current
from tenancy.events import MemorySink
from tenancy.identity import TokenVerifier
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.scoping import AsyncTenantSession, TenantSession, orm, rls
from tenancy.scoping.rls import enable_rls, grant_app_role, tenant_transaction
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer
from tests.support.postgres import app_role_database
from tests.support.scoping_models import Base, Project

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


@pytest.fixture
def engines() -> Iterator[tuple[Engine, Engine]]:
    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)

    with app_role_database(setup, pool_size=1, max_overflow=0) as pair:
        yield pair


def stored(owner: Engine) -> list[tuple[str, str]]:
    """Every project as stored (the owner is a superuser: RLS does not hide rows from it)."""
    with owner.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, name FROM projects ORDER BY name"))
        return [(r.tenant_id, r.name) for r in rows]


def build_app(
    app_engine: Engine,
    *,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    other: str,
    checks: bool,
    seen: list[consistency.LayerCheck | None],
    driver: str | None = None,
) -> Starlette:
    sessions = sessionmaker(app_engine, class_=TenantSession)

    def create() -> None:
        with sessions() as session:
            session.add(Project(id=str(uuid.uuid4()), name="acme project"))
            session.commit()
        seen.append(consistency.active())

    def smuggle() -> None:
        # A buggy handler: it re-points the transaction's RLS setting at another tenant
        # and writes there with plain SQL, which RLS allows (the setting says so).
        with sessions() as session:
            session.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": other})
            session.execute(
                text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'x', 'smuggled')"),
                {"t": other},
            )
            session.commit()

    def other_transaction() -> None:
        with tenant_transaction(app_engine, other) as conn:
            conn.execute(
                text(
                    "INSERT INTO projects (tenant_id, id, name) "
                    "VALUES (:t, 'y', 'other transaction')"
                ),
                {"t": other},
            )

    def listed() -> list[str]:
        with sessions() as session:
            names = list(session.scalars(select(Project.name).order_by(Project.name)))
        seen.append(consistency.active())
        return names

    def endpoint(work: Callable[[], Any]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            result = await run_in_threadpool(work)
            return JSONResponse({"tenant": current().tenant_id, "result": result})

        return handle

    handlers = {name: endpoint(work) for name, work in [("listed", listed), ("create", create)]}
    handlers["smuggle"] = endpoint(smuggle)
    if driver is not None:
        handlers.update(async_handlers(app_engine, driver, other=other, seen=seen))
    routes = [
        Route("/projects", handlers["listed"], methods=["GET"]),
        Route("/projects", handlers["create"], methods=["POST"]),
        Route("/smuggle", handlers["smuggle"], methods=["POST"]),
        Route("/other-transaction", endpoint(other_transaction), methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(
                TenancyMiddleware,
                verifier=verifier,
                tenants=registry,
                region=REGION,
                events=events,
                consistency_checks=checks,
            )
        ],
    )


def async_handlers(
    app_engine: Engine, driver: str, *, other: str, seen: list[consistency.LayerCheck | None]
) -> dict[str, Callable[[Request], Any]]:
    """The same handlers, written for an async service: ``AsyncTenantSession`` on the
    loop (no thread pool), over ``driver``."""
    # NullPool: each request's connection is opened on the loop that serves it.
    engine = create_async_engine(app_engine.url.set(drivername=driver), poolclass=NullPool)
    sessions = async_sessionmaker(engine, class_=AsyncTenantSession)

    def answer(result: Any) -> Response:
        return JSONResponse({"tenant": current().tenant_id, "result": result})

    async def create(request: Request) -> Response:
        async with sessions() as session:
            session.add(Project(id=str(uuid.uuid4()), name="acme project"))
            await session.commit()
        seen.append(consistency.active())
        return answer(None)

    async def smuggle(request: Request) -> Response:
        async with sessions() as session:
            await session.execute(
                text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": other}
            )
            await session.execute(
                text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'x', 'smuggled')"),
                {"t": other},
            )
            await session.commit()
        return answer(None)

    async def listed(request: Request) -> Response:
        async with sessions() as session:
            names = list(await session.scalars(select(Project.name).order_by(Project.name)))
        seen.append(consistency.active())
        return answer(names)

    return {"create": create, "smuggle": smuggle, "listed": listed}


@pytest.fixture(params=["sync", "postgresql+psycopg", "postgresql+asyncpg"])
def flavour(request: pytest.FixtureRequest) -> str | None:
    """How the service's handlers reach the database: ``TenantSession`` in a thread pool,
    or ``AsyncTenantSession`` on the loop over an async driver."""
    return None if request.param == "sync" else str(request.param)


@pytest.fixture
def make_app(
    flavour: str | None,
    engines: tuple[Engine, Engine],
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    globex: Tenant,
) -> Callable[..., tuple[Starlette, list[Any]]]:
    def make(*, checks: bool = True) -> tuple[Starlette, list[Any]]:
        seen: list[Any] = []
        return build_app(
            engines[1],
            verifier=verifier,
            registry=registry,
            events=events,
            other=globex.id,
            checks=checks,
            seen=seen,
            driver=flavour,
        ), seen

    return make


async def post(app: Starlette, path: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://projects"
    ) as client:
        return await client.post(path, headers=bearer(token))


def violation_layers(events: MemorySink) -> list[tuple[str, str, str]]:
    return [
        (e.details["expected_tenant_id"], e.details["layer"], e.details["tenant_id"])
        for e in events.events
        if e.action == "consistency.violation"
    ]


async def test_clean_request_reads_the_setting_back_and_succeeds(
    make_app: Callable[..., tuple[Starlette, list[Any]]],
    engines: tuple[Engine, Engine],
    acme: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    app, seen = make_app()
    assert (await post(app, "/projects", token_for(acme))).status_code == 200
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://projects"
    ) as client:
        listed = await client.get("/projects", headers=bearer(token_for(acme)))
    assert listed.json()["result"] == ["acme project"]
    assert all(c is not None and c.layers >= {"token", "context", "db"} for c in seen)
    assert stored(engines[0]) == [(acme.id, "acme project")]
    assert violation_layers(events) == []


async def test_sql_repointing_the_setting_is_refused_at_commit_and_rolled_back(
    make_app: Callable[..., tuple[Starlette, list[Any]]],
    engines: tuple[Engine, Engine],
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    app, _ = make_app()
    response = await post(app, "/smuggle", token_for(acme))
    assert response.status_code == 500
    assert response.json()["code"] == "tenant-layer-mismatch"
    assert globex.id not in response.text
    # The INSERT ran inside the transaction; the refused commit rolled it back.
    assert stored(engines[0]) == []
    assert violation_layers(events) == [(acme.id, "db", globex.id)]


async def test_sql_repointing_the_setting_passes_rls_with_checks_off(
    make_app: Callable[..., tuple[Starlette, list[Any]]],
    engines: tuple[Engine, Engine],
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
) -> None:
    app, _ = make_app(checks=False)
    assert (await post(app, "/smuggle", token_for(acme))).status_code == 200
    assert stored(engines[0]) == [(globex.id, "smuggled")]  # the bug the check catches


async def test_a_setting_applied_for_another_tenant_is_caught_by_the_read_back(
    make_app: Callable[..., tuple[Starlette, list[Any]]],
    engines: tuple[Engine, Engine],
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broken RLS layer: it sets the setting for another tenant than it was asked for.
    # The ORM layer still scopes to acme, so only the value read back from the database
    # tells them apart.
    def wrong_tenant(connection: Connection, tenant_id: str, **kwargs: Any) -> None:
        rls.set_tenant(connection, globex.id, **kwargs)

    monkeypatch.setattr(orm, "set_tenant", wrong_tenant)
    app, seen = make_app()
    response = await post(app, "/projects", token_for(acme))
    assert response.status_code == 500
    assert response.json()["code"] == "tenant-layer-mismatch"
    assert stored(engines[0]) == []
    assert seen == []
    assert violation_layers(events) == [(acme.id, "db", globex.id)]


async def test_a_transaction_for_another_tenant_outside_the_orm_is_refused(
    make_app: Callable[..., tuple[Starlette, list[Any]]],
    engines: tuple[Engine, Engine],
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    app, _ = make_app()
    response = await post(app, "/other-transaction", token_for(acme))
    assert response.status_code == 500
    assert response.json()["code"] == "tenant-layer-mismatch"
    assert stored(engines[0]) == []
    assert violation_layers(events) == [(acme.id, "db", globex.id)]
