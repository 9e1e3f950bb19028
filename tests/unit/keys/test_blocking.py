"""Encrypted columns in an async session never block the event loop on a cold key.

A cold data key means a key-store read and an unwrap at the provider (a KMS or HSM: tens
to hundreds of milliseconds). In an ``AsyncTenantSession`` that work runs in a worker
thread (``tenancy.keys.blocking``); a warm key is opened on the loop with no hop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from sqlalchemy import Engine, String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from tenancy.context import Principal, TenantContext, bind
from tenancy.keys import EncryptedString, KeyRef, TenantKeys, blocking
from tenancy.keys.columns import SESSION_KEYS
from tenancy.scoping import AsyncTenantSession, TenantScoped, TenantSession
from tenancy.tenants import Tenant
from tests.unit.keys.conftest import Counting

pytestmark = pytest.mark.anyio

UNWRAP_SECONDS = 0.3


class Base(DeclarativeBase):
    pass


class Secret(TenantScoped, Base):
    __tablename__ = "secrets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    body: Mapped[str] = mapped_column(EncryptedString())


class SlowUnwraps(Counting):
    """A provider whose unwrap takes as long as a remote KMS's, noting the thread."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.threads: list[int] = []
        self.delay = 0.0

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        self.threads.append(threading.get_ident())
        time.sleep(self.delay)
        return super().unwrap(key, wrapped, context=context)


def ctx_of(tenant: Tenant) -> TenantContext:
    return TenantContext(
        tenant.id, tenant.slug, "eu-central-1", Principal("i", tenant.id, "alice"), "rid"
    )


@pytest.fixture
async def stored(
    engine: Engine, platform: Counting, acme: Tenant
) -> AsyncIterator[tuple[async_sessionmaker[AsyncTenantSession], str, SlowUnwraps]]:
    Base.metadata.create_all(engine)
    slow = SlowUnwraps(platform.inner)
    tenant_keys = TenantKeys(engine, [slow])
    tenant_keys.create_schema()
    tenant_keys.provision(acme.id)
    secret_id = str(uuid.uuid4())
    with (
        bind(ctx_of(acme)),
        sessionmaker(engine, class_=TenantSession, info={SESSION_KEYS: tenant_keys})() as s,
    ):
        s.add(Secret(id=secret_id, body="the acme secret"))
        s.commit()
    slow.threads.clear()
    slow.delay = UNWRAP_SECONDS
    tenant_keys.announce(acme.id)  # every cached key of the tenant forgotten: cold
    async_engine = create_async_engine(str(engine.url).replace("sqlite", "sqlite+aiosqlite", 1))
    yield (
        async_sessionmaker(
            async_engine, class_=AsyncTenantSession, info={SESSION_KEYS: tenant_keys}
        ),
        secret_id,
        slow,
    )
    await async_engine.dispose()


async def load_with_heartbeat(
    sessions: async_sessionmaker[AsyncTenantSession], tenant: Tenant, secret_id: str
) -> tuple[str, float]:
    """Load the secret while a heartbeat ticks on the loop; the longest gap between ticks."""
    ticks: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    try:
        with bind(ctx_of(tenant)):
            async with sessions() as s:
                secret = await s.get(Secret, (tenant.id, secret_id))
                assert secret is not None
                body = secret.body
    finally:
        done.set()
        await beating
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    return body, max(gaps)


async def test_a_cold_unwrap_runs_off_the_loop_and_the_loop_keeps_ticking(
    stored: tuple[async_sessionmaker[AsyncTenantSession], str, SlowUnwraps], acme: Tenant
) -> None:
    sessions, secret_id, slow = stored
    body, longest_gap = await load_with_heartbeat(sessions, acme, secret_id)
    assert body == "the acme secret"
    assert len(slow.threads) == 1
    assert slow.threads[0] != threading.get_ident()  # not the loop's thread
    assert longest_gap < UNWRAP_SECONDS / 2, longest_gap


async def test_a_warm_key_opens_on_the_loop_without_a_thread_hop(
    stored: tuple[async_sessionmaker[AsyncTenantSession], str, SlowUnwraps],
    acme: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions, secret_id, slow = stored
    await load_with_heartbeat(sessions, acme, secret_id)  # warms the key
    hops: list[Any] = []
    real = blocking._off_the_loop
    monkeypatch.setattr(blocking, "_off_the_loop", lambda work: hops.append(work) or real(work))
    body, _ = await load_with_heartbeat(sessions, acme, secret_id)
    assert body == "the acme secret"
    assert hops == [] and len(slow.threads) == 1  # no hop, no second unwrap


async def test_without_the_off_loop_path_the_loop_would_stall(
    stored: tuple[async_sessionmaker[AsyncTenantSession], str, SlowUnwraps],
    acme: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The control: the measurement above can fail. Run key work inline, as a naive
    # implementation would, and the heartbeat stops for the whole unwrap.
    sessions, secret_id, slow = stored
    monkeypatch.setattr(blocking, "call", lambda fn, /, *a, **k: fn(*a, **k))
    monkeypatch.setattr("tenancy.keys.columns.blocking", blocking)
    body, longest_gap = await load_with_heartbeat(sessions, acme, secret_id)
    assert body == "the acme secret"
    assert slow.threads == [threading.get_ident()]
    assert longest_gap >= UNWRAP_SECONDS, longest_gap


def test_outside_an_async_session_key_work_runs_where_it_is_called() -> None:
    caller = threading.get_ident()
    assert blocking.call(threading.get_ident) == caller
    blocking.may_block()  # allowed here: nothing raised
