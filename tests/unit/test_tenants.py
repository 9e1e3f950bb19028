"""Tenant registry: provisioning rules, lifecycle, cache invalidation, events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from tenancy.clock import FrozenClock
from tenancy.errors import DuplicateSlug, InvalidTenantField, InvalidTransition, UnknownTenant
from tenancy.events import MemorySink
from tenancy.tenants import TenantRegistry, TenantStatus

REGION = "eu-central-1"


def test_provision_creates_an_active_tenant_with_a_uuid(
    registry: TenantRegistry, events: MemorySink
) -> None:
    tenant = registry.provision("acme", region=REGION, display_name="  Acme   Corp ")
    assert str(uuid.UUID(tenant.id)) == tenant.id
    assert tenant.status is TenantStatus.ACTIVE
    assert tenant.display_name == "Acme Corp"
    assert registry.get(tenant.id) == tenant
    assert registry.get_by_slug("acme") == tenant
    assert events.actions() == ["tenant.provisioned"]


def test_duplicate_slug_is_refused_and_nothing_changes(registry: TenantRegistry) -> None:
    first = registry.provision("acme", region=REGION)
    with pytest.raises(DuplicateSlug):
        registry.provision("acme", region="us-east-1")
    assert registry.list() == [first]


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "Acme",
        "a_b",
        "-acme",
        "acme-",
        "1acme",
        "a" * 33,
        "admin",
        "acme.corp",
        "acme/../x",
        "ac me",
    ],
)
def test_invalid_slugs_are_refused(registry: TenantRegistry, slug: str) -> None:
    with pytest.raises(InvalidTenantField):
        registry.provision(slug, region=REGION)
    assert registry.list() == []


@pytest.mark.parametrize("region", ["", "EU", "eu", "eu central", "eu-central-1;drop"])
def test_invalid_regions_are_refused(registry: TenantRegistry, region: str) -> None:
    with pytest.raises(InvalidTenantField):
        registry.provision("acme", region=region)


def test_invalid_display_name_is_refused(registry: TenantRegistry) -> None:
    for name in ("x" * 121, "bell\x07"):
        with pytest.raises(InvalidTenantField):
            registry.provision("acme", region=REGION, display_name=name)


def test_lifecycle_moves_and_their_events(registry: TenantRegistry, events: MemorySink) -> None:
    tenant = registry.provision("acme", region=REGION)
    assert registry.suspend(tenant.id, actor="ops", reason="r").status is TenantStatus.SUSPENDED
    assert registry.activate(tenant.id, actor="ops", reason="r").status is TenantStatus.ACTIVE
    assert registry.offboard(tenant.id, actor="ops", reason="r").status is TenantStatus.OFFBOARDED
    assert events.actions() == [
        "tenant.provisioned",
        "tenant.suspended",
        "tenant.activated",
        "tenant.offboarded",
    ]
    assert {e.actor for e in events.events[1:]} == {"ops"}


def test_offboarded_is_terminal(registry: TenantRegistry) -> None:
    tenant = registry.provision("acme", region=REGION)
    registry.offboard(tenant.id, actor="ops", reason="gone")
    for move in (registry.activate, registry.suspend, registry.offboard):
        with pytest.raises(InvalidTransition):
            move(tenant.id, actor="ops", reason="again")
    assert registry.get(tenant.id).status is TenantStatus.OFFBOARDED


def test_moves_need_a_reason_and_a_known_tenant(registry: TenantRegistry) -> None:
    tenant = registry.provision("acme", region=REGION)
    with pytest.raises(ValueError):
        registry.suspend(tenant.id, actor="ops", reason="  ")
    with pytest.raises(UnknownTenant):
        registry.suspend(str(uuid.uuid4()), actor="ops", reason="x")
    assert registry.get(tenant.id).status is TenantStatus.ACTIVE


def test_cache_is_invalidated_by_a_change_in_this_process(registry: TenantRegistry) -> None:
    tenant = registry.provision("acme", region=REGION)
    assert registry.get(tenant.id).status is TenantStatus.ACTIVE  # now cached
    registry.suspend(tenant.id, actor="ops", reason="r")
    assert registry.peek(tenant.id) is None
    assert registry.get(tenant.id).status is TenantStatus.SUSPENDED


def test_change_by_another_process_is_seen_after_the_ttl(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    clock = FrozenClock(datetime(2026, 11, 22, tzinfo=UTC))
    server_side = TenantRegistry(create_engine(url), clock=clock, cache_ttl=5)
    server_side.create_schema()
    cli_side = TenantRegistry(create_engine(url), clock=clock, cache_ttl=5)
    tenant = cli_side.provision("acme", region=REGION)
    assert server_side.get(tenant.id).status is TenantStatus.ACTIVE
    cli_side.suspend(tenant.id, actor="cli", reason="r")
    assert server_side.get(tenant.id).status is TenantStatus.ACTIVE  # cached, within TTL
    clock.advance(5)
    assert server_side.get(tenant.id).status is TenantStatus.SUSPENDED


def test_list_filters_by_status(registry: TenantRegistry) -> None:
    a = registry.provision("acme", region=REGION)
    registry.provision("globex", region=REGION)
    registry.suspend(a.id, actor="ops", reason="r")
    assert [t.slug for t in registry.list(status=TenantStatus.SUSPENDED)] == ["acme"]
    assert [t.slug for t in registry.list()] == ["acme", "globex"]


def test_status_column_refuses_unknown_values(registry: TenantRegistry, engine: Engine) -> None:
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from tenancy.tenants import tenants_table

    tenant = registry.provision("acme", region=REGION)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(tenants_table).values(status="deleted"))
    assert registry.get(tenant.id).status is TenantStatus.ACTIVE


def test_a_change_made_by_another_process_is_seen_on_the_next_lookup(engine: Engine) -> None:
    from tenancy.keys.state import ProcessKeyState

    signal = ProcessKeyState()  # stands for the host's shared file (SharedKeyState)
    cli = TenantRegistry(engine, signal=signal, cache_ttl=3600)
    cli.create_schema()
    tenant = cli.provision("initech", region="eu-central-1", display_name="Initech")
    replica = TenantRegistry(engine, signal=signal, cache_ttl=3600)
    unsignalled = TenantRegistry(engine, cache_ttl=3600)  # the control: no signal
    for registry in (replica, unsignalled):
        assert registry.get(tenant.id).status.value == "active"  # cached for an hour
    cli.suspend(tenant.id, actor="ops", reason="unpaid")
    assert replica.peek(tenant.id) is None  # the cache entry is stale at once
    assert replica.get(tenant.id).status.value == "suspended"
    assert unsignalled.get(tenant.id).status.value == "active"  # only the TTL would end it
