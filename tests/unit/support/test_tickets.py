"""Ticket integration: a closed ticket ends its grants 24 h later; the signed webhook
refuses anything it cannot authenticate or understand, and then changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.errors import ConfigurationError, InvalidRequest
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER
from tenancy.propagation.replay import MemoryReplayGuard
from tenancy.support import TICKET_GRACE, Grant, MemoryNotifier, SupportAccess
from tenancy.support.tickets import (
    EVENTS_PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TicketEvent,
    apply,
    sign,
    webhook_app,
)
from tenancy.tenants import Tenant, TenantRegistry

SECRET = b"k" * 32
STAFF = "00000000-0000-4000-8000-000000000001"
TICKET = "T-1001"

ENGINEER = Principal(issuer=DEV_ISSUER, tenant_id=STAFF, subject="bob", kind=PrincipalKind.SUPPORT)


def admin_of(tenant: Tenant) -> Principal:
    return Principal(
        issuer=DEV_ISSUER,
        tenant_id=tenant.id,
        subject="alice",
        roles=frozenset({"admin"}),
        assurance=Assurance.MULTI_FACTOR,
    )


@pytest.fixture
def support(engine: Engine, clock: FrozenClock, events: MemorySink) -> SupportAccess:
    access = SupportAccess(
        engine,
        max_duration=timedelta(days=3),
        clock=clock,
        events=events,
        notifier=MemoryNotifier(),
    )
    access.create_schema()
    return access


@pytest.fixture
def guard() -> MemoryReplayGuard:
    return MemoryReplayGuard()


class Webhook:
    """Synchronous calls into the ASGI app (one event loop per call)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)

    def post(
        self, url: str, *, content: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.request("POST", url, content=content, headers=headers or {})

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self._app), base_url="http://testserver"
            ) as c:
                return await c.request(method, url, **kwargs)

        return anyio.run(call)


@pytest.fixture
def client(
    support: SupportAccess,
    clock: FrozenClock,
    registry: TenantRegistry,
    events: MemorySink,
    guard: MemoryReplayGuard,
) -> Webhook:
    return Webhook(
        webhook_app(
            support, secret=SECRET, clock=clock, tenants=registry, replay=guard, events=events
        )
    )


def granted(support: SupportAccess, tenant: Tenant, *, hours: float, ticket: str = TICKET) -> Grant:
    grant = support.request(
        tenant.id,
        ENGINEER,
        ticket_id=ticket,
        justification="customer bug",
        scopes={"worklogs:read"},
        duration=timedelta(hours=hours),
    )
    return support.approve(tenant.id, grant.id, admin_of(tenant))


def body_of(kind: str = "closed", ticket: str = TICKET, tenant: str = "acme") -> bytes:
    return json.dumps({"kind": kind, "ticket_id": ticket, "tenant": tenant}).encode()


def post(
    client: Webhook,
    clock: FrozenClock,
    body: bytes,
    *,
    ts: int | None = None,
    secret: bytes = SECRET,
    headers: dict[str, str] | None = None,
) -> Any:
    stamp = int(clock.timestamp()) if ts is None else ts
    sent = {
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, stamp, body),
        "content-type": "application/json",
    }
    sent.update(headers or {})
    return client.post(EVENTS_PATH, content=body, headers=sent)


def snapshot(support: SupportAccess, events: MemorySink, *tenants: Tenant) -> object:
    """Everything a webhook call could change: grants, their trails, support events."""
    grants = [g for t in tenants for g in support.grants(t.id)]
    trails = [support.trail(g.tenant_id, g.id) for g in grants]
    emitted = [
        e.action
        for e in events.events
        if e.action.startswith("support.") and e.action != "support.ticket_webhook_refused"
    ]
    return grants, trails, emitted


# -- the ticket's closure ends the grant ------------------------------------------------


def test_signed_closed_event_ends_the_grant_24_hours_later(
    client: Webhook, support: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant = granted(support, acme, hours=48)
    clock.advance(3600)
    closed_at = clock.now()

    response = post(client, clock, body_of())

    assert response.status_code == 200
    assert response.json() == {"kind": "closed", "ticket_id": TICKET, "grants": [grant.id]}
    stored = support.get(acme.id, grant.id)
    assert stored.ticket_closed_at == closed_at
    assert stored.expires_at() == closed_at + TICKET_GRACE
    assert [e["action"] for e in support.trail(acme.id, grant.id)][-1] == "ticket_closed"

    clock.advance((TICKET_GRACE - timedelta(minutes=1)).total_seconds())  # +23h59
    assert support.active_grant(acme.id, ENGINEER, scopes={"worklogs:read"}) is not None
    clock.advance(60)  # +24h
    assert support.active_grant(acme.id, ENGINEER, scopes={"worklogs:read"}) is None
    assert support.get(acme.id, grant.id).status_at(clock.now()) == "expired"


def test_an_earlier_end_from_the_approved_duration_wins(
    client: Webhook, support: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant = granted(support, acme, hours=2)
    assert grant.decided_at is not None
    clock.advance(3600)

    assert post(client, clock, body_of()).json()["grants"] == [grant.id]

    stored = support.get(acme.id, grant.id)
    assert stored.expires_at() == grant.decided_at + timedelta(hours=2)
    clock.advance(3600 - 1)  # approval +1h59m59s
    assert support.active_grant(acme.id, ENGINEER) is not None
    clock.advance(1)  # approval +2h
    assert support.active_grant(acme.id, ENGINEER) is None


def test_the_tenant_may_be_named_by_id(
    client: Webhook, support: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant = granted(support, acme, hours=2)
    response = post(client, clock, body_of(tenant=acme.id))
    assert response.status_code == 200 and response.json()["grants"] == [grant.id]


def test_closing_a_ticket_for_another_tenant_leaves_this_tenants_grants(
    client: Webhook,
    support: SupportAccess,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
) -> None:
    granted(support, acme, hours=2)
    before = snapshot(support, events, acme, globex)

    response = post(client, clock, body_of(tenant="globex"))

    assert response.status_code == 200 and response.json()["grants"] == []
    assert snapshot(support, events, acme, globex) == before


def test_an_opened_event_changes_nothing(
    client: Webhook, support: SupportAccess, clock: FrozenClock, events: MemorySink, acme: Tenant
) -> None:
    granted(support, acme, hours=2)
    before = snapshot(support, events, acme)

    response = post(client, clock, body_of(kind="opened"))

    assert response.status_code == 202 and response.json()["grants"] == []
    assert snapshot(support, events, acme) == before


# -- refusals: each changes nothing -----------------------------------------------------


def _unsigned(client: Webhook, clock: FrozenClock) -> Any:
    return client.post(
        EVENTS_PATH, content=body_of(), headers={TIMESTAMP_HEADER: str(int(clock.timestamp()))}
    )


def _no_timestamp(client: Webhook, clock: FrozenClock) -> Any:
    stamp = int(clock.timestamp())
    return client.post(
        EVENTS_PATH, content=body_of(), headers={SIGNATURE_HEADER: sign(SECRET, stamp, body_of())}
    )


def _wrong_secret(client: Webhook, clock: FrozenClock) -> Any:
    return post(client, clock, body_of(), secret=b"x" * 32)


def _tampered_body(client: Webhook, clock: FrozenClock) -> Any:
    stamp = int(clock.timestamp())
    signature = sign(SECRET, stamp, body_of(kind="opened"))
    return post(client, clock, body_of(), headers={SIGNATURE_HEADER: signature})


def _other_timestamp_signed(client: Webhook, clock: FrozenClock) -> Any:
    # Signed for one moment, sent claiming another: the timestamp is part of the MAC.
    stamp = int(clock.timestamp())
    return post(client, clock, body_of(), ts=stamp, headers={TIMESTAMP_HEADER: str(stamp - 1)})


def _bare_hex(client: Webhook, clock: FrozenClock) -> Any:
    stamp = int(clock.timestamp())
    bare = sign(SECRET, stamp, body_of()).removeprefix("sha256=")
    return post(client, clock, body_of(), headers={SIGNATURE_HEADER: bare})


def _non_numeric_timestamp(client: Webhook, clock: FrozenClock) -> Any:
    stamp = str(int(clock.timestamp())) + ".0"
    return client.post(
        EVENTS_PATH,
        content=body_of(),
        headers={TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET, stamp, body_of())},
    )


def _too_old(client: Webhook, clock: FrozenClock) -> Any:
    return post(client, clock, body_of(), ts=int(clock.timestamp()) - 301)


def _too_far_ahead(client: Webhook, clock: FrozenClock) -> Any:
    return post(client, clock, body_of(), ts=int(clock.timestamp()) + 301)


@pytest.mark.parametrize(
    "send",
    [
        _unsigned,
        _no_timestamp,
        _wrong_secret,
        _tampered_body,
        _other_timestamp_signed,
        _bare_hex,
        _non_numeric_timestamp,
        _too_old,
        _too_far_ahead,
    ],
)
def test_unauthenticated_calls_are_refused_and_change_nothing(
    send: Any,
    client: Webhook,
    support: SupportAccess,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
) -> None:
    granted(support, acme, hours=2)
    before = snapshot(support, events, acme)

    response = send(client, clock)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:tenancy:problem:invalid-signature"
    assert "detail" not in problem  # which check failed is not told
    assert snapshot(support, events, acme) == before
    assert [e.action for e in events.events][-1] == "support.ticket_webhook_refused"


def test_a_timestamp_at_the_edge_of_the_window_is_accepted_once(
    client: Webhook, support: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant = granted(support, acme, hours=2)
    stamp = int(clock.timestamp()) - 300
    response = post(client, clock, body_of(), ts=stamp)
    assert response.status_code == 200 and response.json()["grants"] == [grant.id]
    assert post(client, clock, body_of(), ts=stamp).status_code == 401


def test_a_replayed_signature_is_refused_within_the_window(
    client: Webhook, support: SupportAccess, clock: FrozenClock, events: MemorySink, acme: Tenant
) -> None:
    granted(support, acme, hours=2)
    stamp, body = int(clock.timestamp()), body_of(kind="opened")
    assert post(client, clock, body, ts=stamp).status_code == 202
    # The ticket is closed by hand meanwhile; nothing a replay does may show in the trail.
    support.close_ticket(TICKET, tenant_id=acme.id)
    before = snapshot(support, events, acme)
    clock.advance(200)

    replayed = post(client, clock, body, ts=stamp)

    assert replayed.status_code == 401
    assert replayed.json()["type"] == "urn:tenancy:problem:invalid-signature"
    assert snapshot(support, events, acme) == before
    assert events.events[-1].reason == "signature already used"


def test_seen_signatures_are_forgotten_once_they_leave_the_window(
    client: Webhook,
    support: SupportAccess,
    clock: FrozenClock,
    acme: Tenant,
    guard: MemoryReplayGuard,
) -> None:
    stamp, body = int(clock.timestamp()), body_of(kind="opened")
    assert post(client, clock, body, ts=stamp).status_code == 202
    assert len(guard) == 1
    clock.advance(301)
    # The old request is now refused as stale, and its signature no longer held.
    assert post(client, clock, body, ts=stamp).status_code == 401
    assert post(client, clock, body).status_code == 202
    assert len(guard) == 1


def _signed(raw: bytes) -> Any:
    def send(client: Webhook, clock: FrozenClock) -> Any:
        return post(client, clock, raw)

    return send


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 422, "invalid-request"),
        (b"\xff\xfe", 422, "invalid-request"),
        (b'["closed", "T-1001", "acme"]', 422, "invalid-request"),
        (b'{"kind": "closed", "tenant": "acme"}', 422, "invalid-request"),
        (b'{"kind": "closed", "ticket_id": 1001, "tenant": "acme"}', 422, "invalid-request"),
        (body_of(kind="reopened"), 422, "invalid-request"),
        (body_of(kind="CLOSED"), 422, "invalid-request"),
        (body_of(ticket="T" * 129), 422, "invalid-request"),
        (body_of(tenant="nosuch"), 404, "unknown-tenant"),
        (body_of(tenant="00000000-0000-4000-8000-00000000dead"), 404, "unknown-tenant"),
    ],
)
def test_signed_but_unusable_events_are_refused_and_change_nothing(
    raw: bytes,
    status: int,
    code: str,
    client: Webhook,
    support: SupportAccess,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
) -> None:
    granted(support, acme, hours=2)
    before = snapshot(support, events, acme)

    response = post(client, clock, raw)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert snapshot(support, events, acme) == before


def test_an_oversized_body_is_refused_unread(
    client: Webhook, support: SupportAccess, clock: FrozenClock, events: MemorySink, acme: Tenant
) -> None:
    granted(support, acme, hours=2)
    before = snapshot(support, events, acme)
    raw = json.dumps(
        {"kind": "closed", "ticket_id": TICKET, "tenant": "acme", "pad": "x" * 20_000}
    ).encode()

    response = post(client, clock, raw)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert snapshot(support, events, acme) == before


def test_only_post_is_served(client: Webhook) -> None:
    assert client.get(EVENTS_PATH).status_code == 405
    assert client.post("/tickets/other", content=b"{}").status_code == 404


# -- configuration and the in-process interface ----------------------------------------


@pytest.mark.parametrize("secret", [b"", b"s" * 31, "s" * 64])
def test_a_short_or_textual_secret_is_a_configuration_error(
    secret: Any, support: SupportAccess, clock: FrozenClock, registry: TenantRegistry
) -> None:
    with pytest.raises(ConfigurationError):
        webhook_app(support, secret=secret, clock=clock, tenants=registry)


@pytest.mark.parametrize("skew", [0, -1])
def test_max_skew_must_be_positive(
    skew: int, support: SupportAccess, clock: FrozenClock, registry: TenantRegistry
) -> None:
    with pytest.raises(ConfigurationError):
        webhook_app(support, secret=SECRET, clock=clock, tenants=registry, max_skew=skew)


def test_apply_closes_on_closed_and_ignores_opened(
    support: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant = granted(support, acme, hours=2)
    at = datetime.now(UTC)
    assert apply(support, TicketEvent("opened", TICKET, acme.id, at)) == []
    assert support.get(acme.id, grant.id).ticket_closed_at is None

    closed = apply(support, TicketEvent("closed", TICKET, acme.id, at))

    assert [g.id for g in closed] == [grant.id]
    assert support.get(acme.id, grant.id).ticket_closed_at == clock.now()
    with pytest.raises(InvalidRequest):
        apply(support, TicketEvent("reopened", TICKET, acme.id, at))  # type: ignore[arg-type]
