"""Support staff through the middleware and the policy: only under an active grant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tenancy.authz import Authorizer, EmbeddedRego, MemoryDecisionLog
from tenancy.authz.policytests import fixture_bundle
from tenancy.clock import FrozenClock
from tenancy.context import PrincipalKind
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.identity.cache import VerifiedTokenCache
from tenancy.support import SupportAccess
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION
from tests.support.tenant_app import EntryStore, create_app
from tests.unit.support.conftest import STAFF, admin, engineer

pytestmark = pytest.mark.anyio
HOURS = timedelta(hours=1)
ENTRY = {"description": "fix", "minutes": 5, "day": "2026-11-20"}
KINDS = (PrincipalKind.USER, PrincipalKind.SUPPORT)


@pytest.fixture
def decisions() -> MemoryDecisionLog:
    return MemoryDecisionLog()


@pytest.fixture
def app(
    engine: Engine,
    keys: JWKSKeySource,
    registry: TenantRegistry,
    support: SupportAccess,
    clock: FrozenClock,
    events: MemorySink,
    decisions: MemoryDecisionLog,
) -> Any:
    store = EntryStore(engine)
    store.create_schema()
    bundle = fixture_bundle()
    verifier = TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER, audience="worklogs", keys=keys, algorithms=["EdDSA"], kinds=KINDS
            )
        ],
        clock=clock,
    )
    authorizer = Authorizer(
        EmbeddedRego(bundle), service="worklogs", bundle=bundle, clock=clock, log=decisions
    )
    return create_app(
        store=store,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        events=events,
        authorizer=authorizer,
        support=support,
        clock=clock,
    )


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://worklogs"
    ) as c:
        yield c


def staff_token(
    issuer: DevIssuer,
    clock: FrozenClock,
    *,
    mfa: bool = True,
    device: bool = True,
    subject: str = "sam",
    scopes: tuple[str, ...] = ("worklogs:read", "worklogs:write"),
) -> str:
    return issuer.mint(
        tenant_id=STAFF,
        subject=subject,
        audience="worklogs",
        scopes=scopes,
        mfa=mfa,
        kind=PrincipalKind.SUPPORT,
        ttl=86400,
        now=clock.now(),
        extra_claims={"trusted_device": True} if device else None,
    )


def as_staff(token: str, target: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if target is not None:
        headers["x-support-target"] = target
    return headers


def grant(
    support: SupportAccess,
    tenant: Tenant,
    *,
    scopes: tuple[str, ...] = ("worklogs:read",),
    duration: timedelta = 2 * HOURS,
    ticket: str = "T-1",
    allow_write: bool = False,
) -> str:
    grant_id = support.request(
        tenant.id, engineer(), ticket_id=ticket, justification="j", scopes=scopes, duration=duration
    ).id
    support.approve(tenant.id, grant_id, admin(tenant), allow_write=allow_write)
    return grant_id


async def test_without_a_grant_support_is_refused(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    events: MemorySink,
) -> None:
    token = staff_token(issuer, clock)
    for target in (None, "acme", acme.id):
        refused = await client.get("/worklogs", headers=as_staff(token, target))
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:tenancy:problem:no-active-grant"
    assert events.actions()[-1] == "support.refused"


async def test_under_a_grant_support_reads_that_tenant_only(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    globex: Tenant,
    support: SupportAccess,
    decisions: MemoryDecisionLog,
) -> None:
    grant_id = grant(support, acme)
    token = staff_token(issuer, clock)
    allowed = await client.get("/worklogs", headers=as_staff(token, "acme"))
    assert allowed.status_code == 200
    me = (await client.get("/whoami", headers=as_staff(token, "acme"))).json()
    assert (me["tenant"], me["subject"]) == ("acme", "sam")
    assert me["scopes"] == ["worklogs:read"]  # narrowed to the grant
    # A grant for acme says nothing about globex.
    refused = await client.get("/worklogs", headers=as_staff(token, "globex"))
    assert refused.status_code == 403
    assert decisions.records[-1].decision.allow  # the acme decision named the grant
    record = next(r for r in decisions.records if r.decision.allow)
    assert record.input()["support_grant"]["id"] == grant_id
    assert [e["action"] for e in support.trail(acme.id, grant_id)].count("used") == 2


async def test_write_under_a_read_only_grant_is_refused(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
) -> None:
    grant(support, acme, scopes=("worklogs:read", "worklogs:write"))  # writes not consented
    token = staff_token(issuer, clock)
    refused = await client.post("/worklogs", json=ENTRY, headers=as_staff(token, "acme"))
    assert refused.status_code == 403
    listing = await client.get("/worklogs", headers=as_staff(token, "acme"))
    assert listing.json()["items"] == []


async def test_without_mfa_or_from_an_untrusted_device_support_is_refused(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
) -> None:
    grant(support, acme)
    for token in (staff_token(issuer, clock, mfa=False), staff_token(issuer, clock, device=False)):
        refused = await client.get("/worklogs", headers=as_staff(token, "acme"))
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:tenancy:problem:access-denied"


async def test_revoked_grant_refuses_the_very_next_request(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
) -> None:
    grant_id = grant(support, acme)
    token = staff_token(issuer, clock)
    assert (await client.get("/worklogs", headers=as_staff(token, "acme"))).status_code == 200
    support.revoke(acme.id, grant_id, admin(acme), reason="done")
    # Same token, still valid; the decision cache held an allow for this principal.
    refused = await client.get("/worklogs", headers=as_staff(token, "acme"))
    assert refused.status_code == 403


async def test_grant_ends_at_approval_plus_duration(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
) -> None:
    grant(support, acme, duration=2 * HOURS)
    token = staff_token(issuer, clock)
    assert (await client.get("/worklogs", headers=as_staff(token, "acme"))).status_code == 200
    clock.advance(2 * 3600 - 1)
    assert (await client.get("/worklogs", headers=as_staff(token, "acme"))).status_code == 200
    clock.advance(1)
    assert (await client.get("/worklogs", headers=as_staff(token, "acme"))).status_code == 403


async def test_grant_ends_24_hours_after_the_ticket_closes(
    engine: Engine,
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
) -> None:
    support.max_duration = timedelta(days=3)
    grant(support, acme, duration=timedelta(days=3), ticket="T-77")
    support.close_ticket("T-77", tenant_id=acme.id)
    clock.advance(24 * 3600 - 60)
    token = staff_token(issuer, clock)
    assert (await client.get("/worklogs", headers=as_staff(token, "acme"))).status_code == 200
    clock.advance(60)
    token = staff_token(issuer, clock)
    assert (await client.get("/worklogs", headers=as_staff(token, "acme"))).status_code == 403


async def test_finer_decisions_in_handlers_see_the_grant(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    token_for: Any,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
) -> None:
    user = {"Authorization": f"Bearer {token_for(acme, roles=['member'], ttl=86400)}"}
    created = await client.post("/worklogs", json=ENTRY, headers=user)
    assert created.status_code == 201, created.text
    grant(support, acme, scopes=("worklogs:read", "worklogs:write"), allow_write=True)
    token = staff_token(issuer, clock)
    deleted = await client.delete(
        f"/worklogs/{created.json()['id']}", headers=as_staff(token, "acme")
    )
    assert deleted.status_code == 204


async def test_a_grant_without_an_end_admits_nobody(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A store that (wrongly) offers an undecided request as the active grant: it has no
    # end, so it must refuse, never admit with an unbounded grant or crash.
    pending = support.request(
        acme.id,
        engineer(),
        ticket_id="T-9",
        justification="j",
        scopes=("worklogs:read",),
        duration=HOURS,
    )
    monkeypatch.setattr(support, "active_grant", lambda tenant_id, principal: pending)
    refused = await client.get("/worklogs", headers=as_staff(staff_token(issuer, clock), "acme"))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:tenancy:problem:no-active-grant"


async def test_support_token_is_looked_up_once_per_request(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
    support: SupportAccess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grant(support, acme)
    headers = as_staff(staff_token(issuer, clock), "acme")
    lookups: list[bytes] = []
    get = VerifiedTokenCache.get

    def counting(cache: VerifiedTokenCache[Any], digest: bytes, now: float) -> Any:
        lookups.append(digest)
        return get(cache, digest, now)

    monkeypatch.setattr(VerifiedTokenCache, "get", counting)
    for requests in (1, 2):  # a miss (verified, then cached), then a hit
        assert (await client.get("/worklogs", headers=headers)).status_code == 200
        assert len(lookups) == requests
