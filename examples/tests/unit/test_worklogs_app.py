"""The worklogs app behind the middleware: what its own boundary refuses."""

from __future__ import annotations

import httpx
import pytest

from tenancy.tenants import Tenant
from tests.conftest import TokenFactory, bearer

pytestmark = pytest.mark.anyio

ENTRY = {"description": "review", "minutes": 30, "day": "2026-11-20"}


async def test_tenant_in_body_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, token_for: TokenFactory
) -> None:
    response = await client.post(
        "/worklogs", json={**ENTRY, "tenant_id": globex.id}, headers=bearer(token_for(acme))
    )
    assert response.status_code == 422
    assert response.json()["errors"] == {"tenant_id": "unknown field"}
    for tenant in (acme, globex):
        listing = await client.get("/worklogs", headers=bearer(token_for(tenant)))
        assert listing.json()["items"] == []
