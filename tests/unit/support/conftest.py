"""Support-access fixtures: the workflow on the test database, staff and admins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER
from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant

STAFF = "00000000-0000-4000-8000-000000000001"


def engineer(subject: str = "sam", **changes: object) -> Principal:
    fields: dict[str, object] = {
        "issuer": DEV_ISSUER,
        "tenant_id": STAFF,
        "subject": subject,
        "kind": PrincipalKind.SUPPORT,
        "scopes": frozenset({"worklogs:read", "worklogs:write"}),
        "assurance": Assurance.MULTI_FACTOR,
        "device_trusted": True,
    }
    fields.update(changes)
    return Principal(**fields)  # type: ignore[arg-type]


def admin(tenant: Tenant, subject: str = "ann", **changes: object) -> Principal:
    fields: dict[str, object] = {
        "issuer": DEV_ISSUER,
        "tenant_id": tenant.id,
        "subject": subject,
        "roles": frozenset({"admin"}),
        "assurance": Assurance.MULTI_FACTOR,
    }
    fields.update(changes)
    return Principal(**fields)  # type: ignore[arg-type]


@pytest.fixture
def notices() -> MemoryNotifier:
    return MemoryNotifier()


@pytest.fixture
def support(
    engine: Engine, clock: FrozenClock, events: MemorySink, notices: MemoryNotifier
) -> SupportAccess:
    access = SupportAccess(
        engine, max_duration=timedelta(hours=8), clock=clock, events=events, notifier=notices
    )
    access.create_schema()
    return access
