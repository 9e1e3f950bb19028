"""The tenant registry and a tenant-scoped store on real PostgreSQL (local, or a container)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import DuplicateSlug, InvalidTransition, NotFound
from tenancy.events import MemorySink
from tenancy.tenants import TenantRegistry, TenantStatus
from tests.support.postgres import LOCAL_ADMIN_URL, container_database, scratch_database
from tests.support.tenant_app import EntryStore

pytestmark = pytest.mark.postgres
REGION = "eu-central-1"


@pytest.fixture(params=["local", "container"])
def pg_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    source = scratch_database(LOCAL_ADMIN_URL) if request.param == "local" else container_database()
    with source as url:
        engine = create_engine(url)
        yield engine
        engine.dispose()


def test_registry_lifecycle_on_postgres(pg_engine: Engine) -> None:
    events = MemorySink()
    registry = TenantRegistry(pg_engine, events=events)
    registry.create_schema()
    acme = registry.provision("acme", region=REGION)
    with pytest.raises(DuplicateSlug):
        registry.provision("acme", region=REGION)
    registry.suspend(acme.id, actor="ops", reason="r")
    assert registry.get(acme.id).status is TenantStatus.SUSPENDED
    assert registry.get(acme.id).created_at.tzinfo is not None
    registry.offboard(acme.id, actor="ops", reason="r")
    with pytest.raises(InvalidTransition):
        registry.activate(acme.id, actor="ops", reason="r")
    assert events.actions() == ["tenant.provisioned", "tenant.suspended", "tenant.offboarded"]


def test_concurrent_moves_from_the_same_state_cannot_both_win(pg_engine: Engine) -> None:
    registry = TenantRegistry(pg_engine, events=MemorySink())
    registry.create_schema()
    tenant = registry.provision("acme", region=REGION)
    registry.offboard(tenant.id, actor="ops", reason="r")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def flip() -> None:
        barrier.wait()
        try:
            registry.activate(tenant.id, actor="ops", reason="race")
            outcomes.append("moved")
        except InvalidTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=flip) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["refused"] * 8
    assert registry.get(tenant.id).status is TenantStatus.OFFBOARDED


def test_a_scoped_store_isolates_tenants_on_postgres(pg_engine: Engine) -> None:
    registry = TenantRegistry(pg_engine, events=MemorySink())
    registry.create_schema()
    store = EntryStore(pg_engine)
    store.create_schema()
    contexts = {}
    for slug in ("acme", "globex"):
        t = registry.provision(slug, region=REGION)
        contexts[slug] = TenantContext(
            tenant_id=t.id,
            tenant_slug=slug,
            region=REGION,
            principal=Principal(issuer="i", tenant_id=t.id, subject="u"),
            request_id="r",
        )
    with bind(contexts["globex"]):
        secret = store.create(description="globex only", minutes=5)
    with bind(contexts["acme"]):
        assert store.list() == []
        with pytest.raises(NotFound):
            store.get(secret["id"])
        with pytest.raises(NotFound):
            store.delete(secret["id"])
    with bind(contexts["globex"]):
        assert store.get(secret["id"]) == secret
