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


async def test_listing_pages_with_a_cursor_and_never_crosses_tenants(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, token_for: TokenFactory
) -> None:
    mine, theirs = bearer(token_for(acme)), bearer(token_for(globex))
    created = []
    for day in range(1, 8):  # seven worklogs on seven days, and one of globex in between
        entry = {**ENTRY, "day": f"2026-11-{day:02d}", "description": f"day {day}"}
        created.append((await client.post("/worklogs", json=entry, headers=mine)).json()["id"])
        if day == 4:
            await client.post("/worklogs", json=entry, headers=theirs)
    seen: list[str] = []
    url: str | None = "/worklogs?limit=3"
    pages = 0
    while url is not None:
        page = (await client.get(url, headers=mine)).json()
        assert len(page["items"]) <= 3
        seen += [row["id"] for row in page["items"]]
        url, pages = page["next"], pages + 1
    assert pages == 3 and seen == created[::-1]  # newest first, each once, none of globex
    # Without a limit the first page holds up to 100 and says there is no next one.
    assert (await client.get("/worklogs", headers=mine)).json()["next"] is None
    # Globex following acme's cursor still sees only globex's rows.
    cursor = (await client.get("/worklogs?limit=1", headers=mine)).json()["next"]
    theirs_page = (await client.get(cursor, headers=theirs)).json()["items"]
    assert [row["tenant_id"] for row in theirs_page] == [globex.id]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=bm90IGpzb24", "cursor"),
    ],
)
async def test_a_bad_page_request_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, acme: Tenant, token_for: TokenFactory, query: str, field: str
) -> None:
    response = await client.get(f"/worklogs?{query}", headers=bearer(token_for(acme)))
    assert response.status_code == 422 and field in response.json()["errors"]
