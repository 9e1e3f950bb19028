"""Export fixtures: tenant keys under a local provider, a worklogs store, the service."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.worklogs.store import WorklogStore
from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext
from tenancy.events import MemorySink
from tenancy.exports import ExportService, create_schema
from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys
from tenancy.tenants import Tenant

SIGNING_KEY = b"k" * 32


def ctx_of(tenant: Tenant, sub: str = "alice") -> TenantContext:
    return TenantContext(
        tenant.id,
        tenant.slug,
        "eu-central-1",
        Principal("https://issuer.test", tenant.id, sub),
        "rid-1",
    )


@pytest.fixture
def tenant_keys(
    engine: Engine,
    tmp_path: Path,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
) -> TenantKeys:
    root = RootKey.load_or_create(tmp_path / "keys" / "root.key")
    keys = TenantKeys(
        engine,
        [LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root)],
        clock=clock,
        events=events,
    )
    keys.create_schema()
    keys.provision(acme.id)
    keys.provision(globex.id)
    return keys


@pytest.fixture
def worklogs(engine: Engine, tenant_keys: TenantKeys, clock: FrozenClock) -> WorklogStore:
    store = WorklogStore(engine, keys=tenant_keys, clock=clock)
    store.create_schema()
    return store


def export_service(
    engine: Engine,
    worklogs: WorklogStore,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    **kwargs: object,
) -> ExportService:
    create_schema(engine)
    kwargs.setdefault("signing_key", SIGNING_KEY)
    return ExportService(
        engine,
        source=functools.partial(worklogs.list, limit=10_000),
        keys=tenant_keys,
        clock=clock,
        events=events,
        **kwargs,
    )  # type: ignore[arg-type]


@pytest.fixture
def exports(
    engine: Engine,
    worklogs: WorklogStore,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
) -> ExportService:
    return export_service(engine, worklogs, tenant_keys, clock, events)
