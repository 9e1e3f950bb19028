"""The issue's test: a tenant homed in ``eu`` served by a ``us`` instance is refused and
audited, at the edge (the middleware, in front of a small tenant-isolated app)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tenancy.events import MemorySink
from tenancy.identity import TokenVerifier
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import TokenFactory, bearer
from tests.support.tenant_app import EntryStore, create_app
from tests.unit.residency.conftest import EU, US

pytestmark = pytest.mark.anyio


@pytest.fixture
def eu_customer(registry: TenantRegistry) -> Tenant:
    return registry.provision("eucorp", region=EU, display_name="EU Corp")


@pytest.fixture
async def us_instance(
    store: EntryStore, verifier: TokenVerifier, registry: TenantRegistry, events: MemorySink
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store=store, verifier=verifier, tenants=registry, region=US, events=events)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://us.testserver") as c:
        yield c


async def test_eu_tenant_on_a_us_instance_is_refused_403_wrong_region_and_audited(
    us_instance: httpx.AsyncClient,
    eu_customer: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    before = len(events.events)
    response = await us_instance.post(
        "/worklogs",
        headers=bearer(token_for(eu_customer)),
        json={"description": "must not land in us", "minutes": 5, "day": "2026-11-20"},
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:tenancy:problem:wrong-region"
    assert body["code"] == "wrong-region"
    refusals = [e for e in events.events[before:] if e.action == "auth.refused"]
    assert len(refusals) == 1
    assert refusals[0].reason == "wrong-region"
    assert refusals[0].details["code"] == "wrong-region"
    assert refusals[0].request_id == response.headers["x-request-id"]


async def test_wrong_region_refusal_event_names_the_tenant_and_both_regions(
    us_instance: httpx.AsyncClient,
    eu_customer: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    response = await us_instance.get("/worklogs", headers=bearer(token_for(eu_customer)))
    assert response.status_code == 403
    refusal = [e for e in events.events if e.action == "auth.refused"][-1]
    assert refusal.tenant_id == eu_customer.id
    assert refusal.details["home_region"] == EU
    assert refusal.details["region"] == US
