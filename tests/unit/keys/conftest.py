"""Key-service fixtures: a local provider under a root key, and a customer stand-in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.events import MemorySink
from tenancy.keys import DataKeyCache, KeyRef, LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.layers import KeyLayers
from tenancy.keys.provider import KeyInfo, ProviderUnavailable


class Counting:
    """Delegates to a provider, counting calls and failing on demand (outages)."""

    def __init__(self, inner: LocalKeyProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: dict[str, int] = {}
        self.outages = 0  # the next N calls fail as transient outages

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if self.outages:
            self.outages -= 1
            raise ProviderUnavailable("key service did not answer")

    def create_key(self, *, tenant_id: str) -> KeyRef:
        self._count("create_key")
        return self.inner.create_key(tenant_id=tenant_id)

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        self._count("wrap")
        return self.inner.wrap(key, dek, context=context)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        self._count("unwrap")
        return self.inner.unwrap(key, wrapped, context=context)

    def rotate(self, key: KeyRef) -> KeyRef:
        self._count("rotate")
        return self.inner.rotate(key)

    def describe(self, key: KeyRef) -> KeyInfo:
        return self.inner.describe(key)

    def disable(self, key: KeyRef) -> None:
        self.inner.disable(key)

    def enable(self, key: KeyRef) -> None:
        self.inner.enable(key)

    def destroy(self, key: KeyRef) -> None:
        self._count("destroy")
        self.inner.destroy(key)

    def destroy_version(self, key: KeyRef, version: str) -> None:
        self._count("destroy_version")
        self.inner.destroy_version(key, version)


@pytest.fixture
def root(tmp_path: Path) -> RootKey:
    return RootKey.load_or_create(tmp_path / "keys" / "root.key")


@pytest.fixture
def platform(tmp_path: Path, root: RootKey) -> Counting:
    return Counting(LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root))


@pytest.fixture
def customer(tmp_path: Path, root: RootKey) -> Counting:
    return Counting(
        LocalKeyProvider(tmp_path / "keys" / "customer.json", root=root, name="customer-local")
    )


@pytest.fixture
def tenant_keys(
    engine: Engine, platform: Counting, customer: Counting, clock: FrozenClock, events: MemorySink
) -> TenantKeys:
    service = TenantKeys(
        engine,
        [platform, customer],
        cache=DataKeyCache(ttl=60),  # type: ignore[list-item]
        clock=clock,
        events=events,
        backoff=0,
        sleep=lambda _: None,
    )
    service.create_schema()
    return service


def raw_rows(engine: Engine, table: str) -> list[Any]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return list(conn.execute(text(f"SELECT * FROM {table}")))


@pytest.fixture
def grace_keys(
    engine: Engine, platform: Counting, customer: Counting, clock: FrozenClock, events: MemorySink
) -> TenantKeys:
    """Like ``tenant_keys``, but a KEK rotation keeps the replaced version for an hour."""
    service = TenantKeys(
        engine,
        [platform, customer],
        cache=DataKeyCache(ttl=60),  # type: ignore[list-item]
        clock=clock,
        events=events,
        backoff=0,
        sleep=lambda _: None,
        kek_grace=timedelta(hours=1),
    )
    service.create_schema()
    return service


@pytest.fixture
def copy_layers(tmp_path: Path, root: RootKey, clock: FrozenClock) -> KeyLayers:
    """The two key layers as someone holding the key files sees them: fresh provider
    objects over the same files (the customer's key as the customer left it), no cache."""
    providers = [
        LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root),
        LocalKeyProvider(tmp_path / "keys" / "customer.json", root=root, name="customer-local"),
    ]
    return KeyLayers(providers, events=MemorySink(), clock=clock, backoff=0, sleep=lambda _: None)
