"""Queue round trip through a real RabbitMQ: the context rides in AMQP message headers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tenancy.clock import SYSTEM_CLOCK
from tenancy.context import bind, current
from tenancy.errors import InvalidToken
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
from tests.support.broker import amqp_channel
from tests.unit.propagation.conftest import context_of, keys_of

pytestmark = pytest.mark.broker
CONSUMER = "reports"


@pytest.fixture
def channel() -> Iterator[Any]:
    with amqp_channel() as ch:
        yield ch


@pytest.fixture
def ring() -> ServiceKeyring:
    return ServiceKeyring.generate("edge")


@pytest.fixture
def consumer(ring: ServiceKeyring, registry: TenantRegistry, events: MemorySink) -> MessageConsumer:
    verifier = ContextTokenVerifier(
        audience=CONSUMER,
        max_lifetime=900,
        check_replay=False,
        clock=SYSTEM_CLOCK,
        services=[trusted_service("edge", keys=keys_of(ring), scopes={"worklogs:read"})],
    )
    return MessageConsumer(verifier=verifier, tenants=registry, region=REGION, events=events)


def publish(
    channel: Any,
    queue: str,
    minter: ContextTokenMinter,
    tenant: Tenant,
    payload: dict[str, Any],
    *,
    tamper: bool = False,
) -> None:
    import pika

    body = json.dumps(payload).encode()
    headers: dict[str, Any] = {}
    with bind(context_of(tenant)):
        inject(headers, minter=minter, audience=CONSUMER, body=body, scopes=["worklogs:read"])
    if tamper:  # rewritten in transit: another tenant's id and a broken signature
        headers[CONTEXT_HEADER] = headers[CONTEXT_HEADER][:-4] + "AAAA"
        headers["x-tenant-id"] = tenant.id
    channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers))


def drain(channel: Any, queue: str, consumer: MessageConsumer) -> tuple[list[Any], list[str]]:
    """Consume until empty; refused messages are rejected without requeue."""
    processed: list[Any] = []
    refused: list[str] = []
    while True:
        method, props, body = channel.basic_get(queue)
        if method is None:
            return processed, refused
        try:
            processed.append(
                consumer.consume(
                    props.headers or {},
                    body,
                    lambda raw: (current().tenant_slug, json.loads(raw)["n"]),
                )
            )
        except InvalidToken as exc:
            refused.append(exc.reason)
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_ack(method.delivery_tag)


def test_rabbitmq_round_trip_runs_each_message_as_its_publisher(
    channel: Any, ring: ServiceKeyring, consumer: MessageConsumer, acme: Tenant, globex: Tenant
) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    minter = ContextTokenMinter(ring, max_ttl=900)
    publish(channel, queue, minter, acme, {"n": 1})
    publish(channel, queue, minter, globex, {"n": 2})
    processed, refused = drain(channel, queue, consumer)
    assert processed == [("acme", 1), ("globex", 2)]
    assert refused == []


def test_tampered_message_is_refused_and_not_processed_as_any_tenant(
    channel: Any,
    ring: ServiceKeyring,
    consumer: MessageConsumer,
    acme: Tenant,
    globex: Tenant,
    events: MemorySink,
) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    minter = ContextTokenMinter(ring, max_ttl=900)
    publish(channel, queue, minter, acme, {"n": 1}, tamper=True)
    publish(channel, queue, minter, globex, {"n": 2})
    processed, refused = drain(channel, queue, consumer)
    assert processed == [("globex", 2)]
    assert len(refused) == 1 and "verification failed" in refused[0]
    assert "message.refused" in events.actions()
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
