"""The FastAPI example over SQLite (aiosqlite): what it serves, what it refuses, and that
the comment is sealed at rest."""

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.tests.fastapi.conftest import Build
from tenancy.tenants import Tenant

ENTRY = {"description": "review", "minutes": 30, "day": "2026-11-20", "comment": "private"}


def client_call(app: FastAPI) -> Callable[..., httpx.Response]:
    def call(method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
                headers = {"Authorization": f"Bearer {token}"}
                return await client.request(method, path, headers=headers, **kw)

        return asyncio.run(go())

    return call


def test_create_get_list_delete_within_one_tenant(
    service: Build,
    tenancy_tenants: Mapping[str, Tenant],
    tenancy_token: Callable[..., str],
    sqlite_engines: tuple[Engine, AsyncEngine],
) -> None:
    call = client_call(service())
    acme, globex = tenancy_tenants["acme"], tenancy_tenants["globex"]
    member = tenancy_token(acme, roles=["member"], scopes=["worklogs:read", "worklogs:write"])
    other = tenancy_token(globex, roles=["member"], scopes=["worklogs:read", "worklogs:write"])
    viewer = tenancy_token(acme, roles=["viewer"], scopes=["worklogs:read"])

    created = call("POST", "/worklogs", member, json=ENTRY)
    assert created.status_code == 201 and created.headers["location"].startswith("/worklogs/")
    worklog = created.json()
    assert worklog["tenant_id"] == acme.id and worklog["comment"] == "private"
    path = f"/worklogs/{worklog['id']}"
    assert call("GET", path, member).json()["comment"] == "private"
    with sqlite_engines[0].connect() as conn:  # at rest: a ciphertext, not the text
        stored = conn.execute(text("SELECT comment FROM fastapi_worklogs")).scalar_one()
    assert b"private" not in bytes(stored)

    # Another tenant's id is the same 404 as one that does not exist.
    theirs = call("GET", path, other)
    assert theirs.status_code == 404 and theirs.json()["code"] == "not-found"
    assert call("GET", "/worklogs/not-a-uuid", other).json() == theirs.json() | {
        "instance": "/worklogs/not-a-uuid"
    }
    assert call("GET", "/worklogs", other).json() == {"items": [], "next": None}

    # Deleting: a viewer's token is refused by the route's policy; a member may.
    assert call("DELETE", path, viewer).status_code == 403
    assert call("DELETE", path, other).status_code == 404
    assert call("DELETE", path, member).status_code == 204
    assert call("GET", path, member).status_code == 404


def test_the_listing_pages_with_a_cursor(
    service: Build, tenancy_tenants: Mapping[str, Tenant], tenancy_token: Callable[..., str]
) -> None:
    call = client_call(service())
    member = tenancy_token(
        tenancy_tenants["acme"], roles=["member"], scopes=["worklogs:read", "worklogs:write"]
    )
    made = [
        call("POST", "/worklogs", member, json={**ENTRY, "day": f"2026-11-0{d}"}).json()["id"]
        for d in range(1, 6)
    ]
    seen: list[str] = []
    url: str | None = "/worklogs?limit=2"
    pages = 0
    while url is not None:
        body = call("GET", url, member).json()
        seen += [item["id"] for item in body["items"]]
        url, pages = body["next"], pages + 1
    assert seen == made[::-1] and pages == 3  # newest first, 2 + 2 + 1


def test_malformed_requests_are_422_problems(
    service: Build, tenancy_tenants: Mapping[str, Tenant], tenancy_token: Callable[..., str]
) -> None:
    call = client_call(service())
    acme, globex = tenancy_tenants["acme"], tenancy_tenants["globex"]
    member = tenancy_token(acme, roles=["member"], scopes=["worklogs:read", "worklogs:write"])
    picked = call("POST", "/worklogs", member, json={**ENTRY, "tenant_id": globex.id})
    assert picked.status_code == 422
    assert picked.headers["content-type"] == "application/problem+json"
    assert set(picked.json()["errors"]) == {"tenant_id"}  # the body never names the tenant
    assert set(call("GET", "/worklogs?limit=0", member).json()["errors"]) == {"limit"}
    assert call("GET", "/worklogs?cursor=%%%", member).json()["errors"] == {
        "cursor": "not a cursor this API returned"
    }


def test_openapi_shows_each_operations_scopes(service: Build) -> None:
    paths = service().openapi()["paths"]
    assert paths["/worklogs"]["get"]["security"] == [{"tenancy": ["worklogs:read"]}]
    assert paths["/worklogs"]["post"]["security"] == [{"tenancy": ["worklogs:write"]}]
    assert paths["/worklogs/{worklog_id}"]["delete"]["security"] == [
        {"tenancy": ["worklogs:write"]}
    ]
    assert paths["/healthz"]["get"]["security"] == []
