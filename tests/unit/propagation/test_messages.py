"""Queue messages: the consumer runs under the publisher's tenant, or not at all."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import pytest

from tenancy.clock import FrozenClock
from tenancy.context import TenantContext, bind, current, current_or_none
from tenancy.errors import InvalidToken, NoTenantContext, TenantSuspended
from tenancy.events import MemorySink
from tenancy.propagation import (
    CONTEXT_HEADER,
    ContextTokenMinter,
    ContextTokenVerifier,
    MessageConsumer,
    ServiceKeyring,
    inject,
    trusted_service,
)
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION
from tests.unit.propagation.conftest import EDGE, context_of, keys_of

CONSUMER = "reports"
SCOPES = ["worklogs:read"]
Message = tuple[dict[str, Any], bytes]


@pytest.fixture
def publisher(edge_ring: ServiceKeyring, clock: FrozenClock) -> ContextTokenMinter:
    return ContextTokenMinter(edge_ring, clock=clock, max_ttl=900)


@pytest.fixture
def consumer(
    edge_ring: ServiceKeyring, clock: FrozenClock, registry: TenantRegistry, events: MemorySink
) -> MessageConsumer:
    verifier = ContextTokenVerifier(
        audience=CONSUMER,
        clock=clock,
        max_lifetime=900,
        check_replay=False,
        services=[trusted_service(EDGE, keys=keys_of(edge_ring), scopes=SCOPES)],
    )
    return MessageConsumer(
        verifier=verifier, tenants=registry, region=REGION, events=events, clock=clock
    )


def publish(
    publisher: ContextTokenMinter,
    ctx: TenantContext,
    payload: dict[str, Any],
    headers: dict[str, Any] | None = None,
) -> Message:
    body = json.dumps(payload).encode()
    headers = dict(headers or {})
    with bind(ctx):
        inject(headers, minter=publisher, audience=CONSUMER, body=body, scopes=SCOPES)
    return headers, body


def test_queue_round_trip_runs_the_callback_as_the_publishing_tenant(
    publisher: ContextTokenMinter,
    consumer: MessageConsumer,
    acme_ctx: TenantContext,
    globex: Tenant,
) -> None:
    q: queue.Queue[Message] = queue.Queue()
    q.put(publish(publisher, acme_ctx, {"report": 1}))
    q.put(publish(publisher, context_of(globex, sub="gina"), {"report": 2}))
    seen: list[tuple[str, str, int]] = []

    def handle(body: bytes) -> None:
        ctx = current()
        seen.append((ctx.tenant_slug, ctx.principal.subject, json.loads(body)["report"]))

    def worker() -> None:  # a plain thread: no context of its own
        assert current_or_none() is None
        for _ in range(2):
            consumer.consume(*q.get(), handle)
        assert current_or_none() is None

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert seen == [("acme", "alice", 1), ("globex", "gina", 2)]


def test_tampered_header_is_refused_and_the_message_is_not_processed(
    publisher: ContextTokenMinter,
    consumer: MessageConsumer,
    acme_ctx: TenantContext,
    events: MemorySink,
) -> None:
    headers, body = publish(publisher, acme_ctx, {"report": 1})
    token = headers[CONTEXT_HEADER]
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    calls: list[bytes] = []
    with pytest.raises(InvalidToken):
        consumer.consume({**headers, CONTEXT_HEADER: flipped}, body, calls.append)
    assert calls == []
    assert events.actions()[-1] == "message.refused"


@pytest.mark.parametrize("mutate", ["body", "missing", "garbage", "bytes-garbage"])
def test_message_without_a_matching_context_is_refused(
    publisher: ContextTokenMinter, consumer: MessageConsumer, acme_ctx: TenantContext, mutate: str
) -> None:
    headers, body = publish(publisher, acme_ctx, {"report": 1})
    if mutate == "body":  # the token lifted onto another message
        body = json.dumps({"report": 666}).encode()
    elif mutate == "missing":
        del headers[CONTEXT_HEADER]
    elif mutate == "garbage":
        headers[CONTEXT_HEADER] = "x.y.z"
    else:
        headers[CONTEXT_HEADER] = b"\xff\xfe"
    calls: list[bytes] = []
    with pytest.raises(InvalidToken):
        consumer.consume(headers, body, calls.append)
    assert calls == []


def test_tenant_headers_never_speak_for_the_tenant(
    publisher: ContextTokenMinter,
    consumer: MessageConsumer,
    acme_ctx: TenantContext,
    globex: Tenant,
) -> None:
    headers, body = publish(
        publisher,
        acme_ctx,
        {"report": 1},
        headers={"x-tenant-id": globex.id, "content-type": "json"},
    )
    assert "x-tenant-id" not in headers and headers["content-type"] == "json"
    headers["X-Tenant-ID"] = globex.id  # added in transit: ignored
    assert consumer.consume(headers, body, lambda _: current().tenant_id) == acme_ctx.tenant_id


def test_publishing_without_a_context_is_refused(publisher: ContextTokenMinter) -> None:
    headers: dict[str, Any] = {}
    with pytest.raises(NoTenantContext):
        inject(headers, minter=publisher, audience=CONSUMER, body=b"{}", scopes=SCOPES)
    assert headers == {}


def test_message_for_another_consumer_is_refused(
    publisher: ContextTokenMinter, consumer: MessageConsumer, acme_ctx: TenantContext
) -> None:
    body = b"{}"
    headers: dict[str, Any] = {}
    with bind(acme_ctx):
        inject(headers, minter=publisher, audience="billing", body=body, scopes=SCOPES)
    with pytest.raises(InvalidToken, match=r"(?i)audience"):
        consumer.consume(headers, body, lambda _: None)


def test_expired_message_is_refused(
    publisher: ContextTokenMinter,
    consumer: MessageConsumer,
    acme_ctx: TenantContext,
    clock: FrozenClock,
) -> None:
    headers, body = publish(publisher, acme_ctx, {"report": 1})
    clock.advance(900 + 5)
    with pytest.raises(InvalidToken, match="expired"):
        consumer.consume(headers, body, lambda _: None)


def test_suspended_tenants_messages_are_refused(
    publisher: ContextTokenMinter,
    consumer: MessageConsumer,
    acme_ctx: TenantContext,
    registry: TenantRegistry,
    acme: Tenant,
) -> None:
    headers, body = publish(publisher, acme_ctx, {"report": 1})
    registry.suspend(acme.id, actor="test", reason="unpaid")
    with pytest.raises(TenantSuspended):
        consumer.consume(headers, body, lambda _: None)


def test_redelivery_of_the_same_message_is_processed_again(
    publisher: ContextTokenMinter, consumer: MessageConsumer, acme_ctx: TenantContext
) -> None:
    message = publish(publisher, acme_ctx, {"report": 1})
    results = [consumer.consume(*message, lambda _: current().tenant_slug) for _ in range(2)]
    assert results == ["acme", "acme"]
