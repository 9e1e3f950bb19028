"""Fixtures of the audit tests: a key and an ``AuditLog`` over the shared SQLite engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from tenancy.audit import AuditLog
from tenancy.clock import FrozenClock
from tenancy.events import SecurityEvent

KEY = bytes(range(32))
TENANT_A = "00000000-0000-4000-8000-00000000000a"
TENANT_B = "00000000-0000-4000-8000-00000000000b"


@pytest.fixture
def audit(engine: Engine, clock: FrozenClock) -> Iterator[AuditLog]:
    log = AuditLog(engine, KEY, clock=clock, flush_interval=0.01)
    log.create_schema()
    yield log
    log.close()


EventFactory = Callable[..., SecurityEvent]


@pytest.fixture
def event(clock: FrozenClock) -> EventFactory:
    def _make(
        action: str = "auth.refused", tenant_id: str | None = TENANT_A, **kwargs: object
    ) -> SecurityEvent:
        return SecurityEvent(action=action, at=clock.now(), tenant_id=tenant_id, **kwargs)  # type: ignore[arg-type]

    return _make
