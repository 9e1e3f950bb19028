"""RabbitMQ for tests: the local broker (fails under CI=true when missing, else skips)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.postgres import in_ci

AMQP_URL = os.environ.get("TENANCY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@contextmanager
def amqp_channel() -> Iterator[object]:
    """A channel on the local broker, closed afterwards."""
    import pika
    from pika.exceptions import AMQPConnectionError

    try:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except AMQPConnectionError as exc:
        message = f"RabbitMQ is not reachable at {AMQP_URL}: {exc!r}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")
    try:
        yield connection.channel()
    finally:
        connection.close()
