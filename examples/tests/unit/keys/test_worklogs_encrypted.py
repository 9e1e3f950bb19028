"""The worklogs comment is encrypted at rest; a revoked key is a 503, the rest keeps working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tenancy.clock import FrozenClock
from tenancy.errors import KeyDestroyed
from tenancy.events import MemorySink
from tenancy.identity import TokenVerifier
from tenancy.keys import Binding, TenantKeys
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples.worklogs.app import create_app
from tenancy_examples.worklogs.store import WorklogStore
from tests.conftest import REGION, TokenFactory, bearer
from tests.unit.keys.conftest import Counting

pytestmark = pytest.mark.anyio
ENTRY = {
    "description": "review",
    "minutes": 30,
    "day": "2026-11-20",
    "comment": "plaintext-marker: the customer's secret plan",
}


@pytest.fixture
async def client(
    engine: Engine,
    tenant_keys: TenantKeys,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
) -> AsyncIterator[httpx.AsyncClient]:
    tenant_keys.provision(acme.id)
    tenant_keys.provision(globex.id)
    store = WorklogStore(engine, keys=tenant_keys)
    store.create_schema()
    app: Any = create_app(
        store=store, verifier=verifier, tenants=registry, region=REGION, events=events
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://worklogs"
    ) as c:
        yield c


async def test_comment_round_trips_and_is_ciphertext_in_the_table(
    client: httpx.AsyncClient, token_for: TokenFactory, acme: Tenant, engine: Engine
) -> None:
    created = await client.post("/worklogs", json=ENTRY, headers=bearer(token_for(acme)))
    assert created.status_code == 201 and created.json()["comment"] == ENTRY["comment"]
    got = await client.get(f"/worklogs/{created.json()['id']}", headers=bearer(token_for(acme)))
    assert got.json()["comment"] == ENTRY["comment"]
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT comment FROM worklogs")).scalar_one()
    assert b"plaintext-marker" not in bytes(raw) and bytes(raw)[0] == 1


async def test_revoked_key_is_a_503_for_encrypted_reads_only_and_only_for_that_tenant(
    client: httpx.AsyncClient,
    token_for: TokenFactory,
    acme: Tenant,
    globex: Tenant,
    tenant_keys: TenantKeys,
    platform: Counting,
    clock: FrozenClock,
) -> None:
    acme_user, globex_user = bearer(token_for(acme)), bearer(token_for(globex))
    mine = (await client.post("/worklogs", json=ENTRY, headers=acme_user)).json()
    await client.post("/worklogs", json=ENTRY, headers=globex_user)
    kek = tenant_keys.status(acme.id).kek
    assert kek is not None
    platform.disable(kek.ref)  # as if acme revoked its key
    assert (await client.get("/worklogs", headers=acme_user)).status_code == 200  # cached
    clock.advance(61)  # past the data-key cache TTL

    refused = await client.get("/worklogs", headers=acme_user)
    assert refused.status_code == 503
    assert refused.json()["type"] == "urn:tenancy:problem:key-unavailable"
    writing = await client.post("/worklogs", json=ENTRY, headers=acme_user)
    assert writing.status_code == 503
    # Unencrypted operations keep working for acme; globex is not affected at all.
    assert (await client.get("/whoami", headers=acme_user)).status_code == 200
    plain = {k: v for k, v in ENTRY.items() if k != "comment"}
    assert (await client.post("/worklogs", json=plain, headers=acme_user)).status_code == 201
    assert (await client.delete(f"/worklogs/{mine['id']}", headers=acme_user)).status_code == 204
    assert (await client.get("/worklogs", headers=globex_user)).status_code == 200

    platform.enable(kek.ref)
    assert (await client.get("/worklogs", headers=acme_user)).status_code == 200


async def test_no_plaintext_anywhere_in_the_database_file(
    client: httpx.AsyncClient, token_for: TokenFactory, acme: Tenant, engine: Engine
) -> None:
    created = await client.post("/worklogs", json=ENTRY, headers=bearer(token_for(acme)))
    assert created.status_code == 201
    engine.dispose()  # everything written out to the file
    database = engine.url.database
    assert database is not None
    raw = Path(database).read_bytes()
    assert b"plaintext-marker" not in raw
    assert b"review" in raw  # the unencrypted description is there: the scan is real


async def test_shredded_tenant_rows_remain_but_no_key_opens_them(
    client: httpx.AsyncClient,
    token_for: TokenFactory,
    acme: Tenant,
    globex: Tenant,
    tenant_keys: TenantKeys,
    engine: Engine,
) -> None:
    await client.post("/worklogs", json=ENTRY, headers=bearer(token_for(acme)))
    await client.post("/worklogs", json=ENTRY, headers=bearer(token_for(globex)))
    tenant_keys.shred(acme.id)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, comment FROM worklogs")).fetchall()
    acme_rows = [bytes(c) for t, c in rows if t == acme.id]
    assert len(acme_rows) == 1 and acme_rows[0][0] == 1  # the ciphertext is still there
    refused = await client.get("/worklogs", headers=bearer(token_for(acme)))
    assert refused.status_code == 410
    assert refused.json()["type"] == "urn:tenancy:problem:key-destroyed"
    with pytest.raises(KeyDestroyed):
        tenant_keys.decrypt(
            acme_rows[0], Binding(acme.id, "worklogs", "comment", "x"), purpose="worklogs"
        )
    assert (await client.get("/worklogs", headers=bearer(token_for(globex)))).status_code == 200


async def test_one_tampered_comment_is_served_as_unreadable_not_a_500(
    client: httpx.AsyncClient,
    token_for: TokenFactory,
    acme: Tenant,
    engine: Engine,
    events: MemorySink,
    tenant_keys: TenantKeys,
) -> None:
    # The decision: a value that fails its integrity check does not fail the listing; its
    # field is null and named in "unreadable", the other rows are served, nothing wrong is
    # returned, and a key.decrypt_failed event records it.
    user = bearer(token_for(acme))
    good = (await client.post("/worklogs", json=ENTRY, headers=user)).json()
    bad = (
        await client.post("/worklogs", json={**ENTRY, "comment": "to be damaged"}, headers=user)
    ).json()
    with engine.begin() as conn:
        raw = bytearray(
            conn.execute(
                text("SELECT comment FROM worklogs WHERE id = :i"), {"i": bad["id"]}
            ).scalar_one()
        )
        raw[-1] ^= 0x01  # one flipped bit in the tag
        conn.execute(
            text("UPDATE worklogs SET comment = :c WHERE id = :i"),
            {"c": bytes(raw), "i": bad["id"]},
        )
    listing = await client.get("/worklogs", headers=user)
    assert listing.status_code == 200
    rows = {row["id"]: row for row in listing.json()["items"]}
    assert rows[good["id"]]["comment"] == ENTRY["comment"]
    assert "unreadable" not in rows[good["id"]]
    assert rows[bad["id"]]["comment"] is None and rows[bad["id"]]["unreadable"] == ["comment"]
    single = await client.get(f"/worklogs/{bad['id']}", headers=user)
    assert single.status_code == 200 and single.json()["unreadable"] == ["comment"]
    failed = [e for e in events.events if e.action == "key.decrypt_failed"]
    assert failed and {e.tenant_id for e in failed} == {acme.id}
    assert all(e.details["row"].endswith(bad["id"]) for e in failed)
    assert "to be damaged" not in listing.text
