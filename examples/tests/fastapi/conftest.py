"""The FastAPI example built in-process: a sync engine for the registry and the keys, an
async engine (aiosqlite, or an async PostgreSQL driver) for its sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from tenancy.authn import Authenticator
from tenancy.authz import Authorizer, EmbeddedRego, PolicyBundle
from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.columns import SESSION_KEYS
from tenancy.scoping import AsyncTenantSession
from tenancy.tenants import Tenant, TenantRegistry
from tenancy.testing.plugin import Role
from tenancy_examples import policy
from tenancy_examples.fastapi_worklogs.app import POLICY_DATA, SERVICE, create_app
from tenancy_examples.fastapi_worklogs.models import create_schema

READ, WRITE = "worklogs:read", "worklogs:write"
# What the probe cannot read from the OpenAPI document: which request seeds data, where
# the new worklog's id is. The body comes from the document's example, with canaries.
ROUTES: Mapping[str, Mapping[str, Any]] = {
    "POST /worklogs": {
        "body": {
            "description": "probe {canary}",
            "minutes": 5,
            "day": "2026-11-21",
            "comment": "secret {canary}",
        },
        "seed": True,
        "capture": {"worklog_id": "id"},
    },
}
PUBLIC = ("/healthz", "/openapi.json")

Build = Callable[..., FastAPI]


def bundle() -> PolicyBundle:
    """The shipped policy, the worklogs example's data, and this service's routes."""
    return PolicyBundle.from_directory(data=[policy.DATA, POLICY_DATA])


def tenant_keys(engine: Engine, folder: Path, tenants: Mapping[str, Tenant]) -> TenantKeys:
    keys = TenantKeys(
        engine,
        [LocalKeyProvider(folder / "keks.json", root=RootKey.load_or_create(folder / "root.key"))],
        default_provider="local",
    )
    if engine.dialect.name == "sqlite":
        keys.create_schema()
    for tenant in tenants.values():
        if not keys.status(tenant.id).kek:
            keys.provision(tenant.id)
    return keys


def build_service(
    *,
    engine: Engine,
    async_engine: AsyncEngine,
    registry: TenantRegistry,
    verifier: Authenticator,
    tenants: Mapping[str, Tenant],
    folder: Path,
    authorizer: Authorizer | None = None,
) -> FastAPI:
    keys = tenant_keys(engine, folder, tenants)
    sessions = async_sessionmaker(
        async_engine, class_=AsyncTenantSession, expire_on_commit=False, info={SESSION_KEYS: keys}
    )
    rules = bundle()
    return create_app(
        sessions=sessions,
        verifier=verifier,
        tenants=registry,
        region="eu-central-1",
        authorizer=authorizer or Authorizer(EmbeddedRego(rules), service=SERVICE, bundle=rules),
    )


@pytest.fixture
def tenancy_roles() -> Mapping[str, Role]:
    return {"member": Role((READ, WRITE)), "viewer": Role((READ,))}


@pytest.fixture
def sqlite_engines(tmp_path: Path) -> Iterator[tuple[Engine, AsyncEngine]]:
    """One SQLite file, sync and async. NullPool: the probe runs on an event loop of its
    own, and a pooled aiosqlite connection belongs to the loop that opened it."""
    path = tmp_path / "fastapi-worklogs.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
    async_engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", poolclass=NullPool, connect_args={"timeout": 30}
    )
    with engine.begin() as connection:
        create_schema(connection)
    yield engine, async_engine
    asyncio.run(async_engine.dispose())
    engine.dispose()


@pytest.fixture
def tenancy_registry(sqlite_engines: tuple[Engine, AsyncEngine]) -> TenantRegistry:
    registry = TenantRegistry(sqlite_engines[0])
    registry.create_schema()
    return registry


@pytest.fixture
def service(
    tmp_path: Path,
    sqlite_engines: tuple[Engine, AsyncEngine],
    tenancy_registry: TenantRegistry,
    tenancy_verifier: Authenticator,
    tenancy_tenants: Mapping[str, Tenant],
) -> Build:
    """``service(authorizer=None)``: the example on SQLite with the plugin's tenants."""

    def build(**kwargs: Any) -> FastAPI:
        engine, async_engine = sqlite_engines
        return build_service(
            engine=engine,
            async_engine=async_engine,
            registry=tenancy_registry,
            verifier=tenancy_verifier,
            tenants=tenancy_tenants,
            folder=tmp_path,
            **kwargs,
        )

    return build
