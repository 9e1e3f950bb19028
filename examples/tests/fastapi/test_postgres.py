"""The FastAPI example on PostgreSQL as the application role, under forced RLS, through
both async drivers: the probe finds no leak, and the database itself hides other
tenants' rows from a connection with no tenant set."""

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from examples.tests.fastapi.conftest import PUBLIC, ROUTES, build_service
from examples.tests.integration.test_db_matrix import migrated_worklogs
from tenancy.identity import TokenVerifier
from tenancy.tenants import Tenant, TenantRegistry
from tenancy.testing.probe import ProbeReport
from tenancy_examples.fastapi_worklogs.models import create_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def databases() -> Iterator[tuple[Engine, Engine]]:
    """(owner, application role): the worklogs migrations (registry, keys) and, as the
    owner, this example's table under forced RLS with DML granted to the app role."""
    with migrated_worklogs() as (owner, app):
        with owner.begin() as conn:
            create_schema(conn, app_role=str(app.url.username))
        yield owner, app


@pytest.fixture
def tenancy_registry(databases: tuple[Engine, Engine]) -> TenantRegistry:
    return TenantRegistry(databases[1])


@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
def test_the_example_on_postgres_leaks_nothing(
    driver: str,
    tmp_path: Path,
    databases: tuple[Engine, Engine],
    tenancy_registry: TenantRegistry,
    tenancy_verifier: TokenVerifier,
    tenancy_tenants: Mapping[str, Tenant],
    assert_isolated: Callable[..., ProbeReport],
) -> None:
    owner, app = databases
    async_engine = create_async_engine(app.url.set(drivername=driver), poolclass=NullPool)
    service = build_service(
        engine=app,
        async_engine=async_engine,
        registry=tenancy_registry,
        verifier=tenancy_verifier,
        tenants=tenancy_tenants,
        folder=tmp_path,
    )
    try:
        report = assert_isolated(service, routes=ROUTES, exclude=PUBLIC)
    finally:
        asyncio.run(async_engine.dispose())
    assert report.exit_code == 0 and report.summary["enforced"] > 50
    with owner.connect() as conn:  # the owner (superuser) sees every tenant's rows
        by_tenant = dict(
            conn.execute(
                text("SELECT tenant_id, count(*) FROM fastapi_worklogs GROUP BY tenant_id")
            ).all()
        )
    assert set(by_tenant) == {t.id for t in tenancy_tenants.values()}
    with app.connect() as conn:  # the app role with no tenant set sees none (RLS)
        assert conn.execute(text("SELECT count(*) FROM fastapi_worklogs")).scalar_one() == 0
        forced = conn.execute(
            text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'fastapi_worklogs'")
        ).scalar_one()
    assert forced is True
