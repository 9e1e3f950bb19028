"""Unwrapped data keys, kept briefly: a time-to-live, a use limit and a generation.

An entry is only used while the tenant's key-state *generation* (``state.py``) is the one
it was filled under, so a shred, rotation or switch made by any process is seen on the
next use. The TTL bounds what no process can observe: a customer revoking its key inside
its own KMS takes effect within the TTL (per tenant, or the cache's default), when every
entry must be unwrapped again and the disabled key refuses. ``forget(tenant)`` drops a
tenant's entries in this process at once.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from tenancy.errors import ConfigurationError
from tenancy.keys.envelope import DataKey


class _Entry:
    __slots__ = ("expires", "generation", "uses", "value")

    def __init__(self, expires: float, value: DataKey, generation: int) -> None:
        self.expires = expires
        self.generation = generation
        self.uses = 0
        self.value = value


class DataKeyCache:
    """(tenant, purpose, version) -> derived data key; bounded by age, uses and size."""

    def __init__(
        self, *, ttl: float = 300.0, max_uses: int = 1_000_000, max_entries: int = 10_000
    ) -> None:
        if ttl <= 0 or max_uses < 1 or max_entries < 1:
            raise ConfigurationError("ttl, max_uses and max_entries must be positive")
        self.ttl = ttl
        self._max_uses = max_uses
        self._max_entries = max_entries
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int], now: float, generation: int = 0) -> DataKey | None:
        """The entry for ``key`` if it is fresh, under its use limit, and was filled
        under ``generation``; else None (and a stale entry is dropped)."""
        # Lock-free on the hot path: a dict read is atomic; the use count is approximate
        # under concurrency, which only makes an entry live a few uses longer or shorter.
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires or entry.uses >= self._max_uses or entry.generation != generation:
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            return None
        entry.uses += 1
        return entry.value

    def put(
        self,
        key: tuple[str, str, int],
        value: DataKey,
        now: float,
        *,
        generation: int = 0,
        ttl: float | None = None,
    ) -> None:
        """Keep ``value`` for ``ttl`` seconds (default: the cache's), under the
        ``generation`` read *before* it was loaded."""
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = _Entry(now + (self.ttl if ttl is None else ttl), value, generation)
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]

    def forget(self, tenant_id: str) -> None:
        """Drop every cached data key of ``tenant_id`` in this process (other processes
        learn of a change through the key-state signal, not through this)."""
        with self._lock:
            for key in [k for k in self._entries if isinstance(k, tuple) and k[0] == tenant_id]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
