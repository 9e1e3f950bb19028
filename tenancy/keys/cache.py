"""Unwrapped data keys, kept briefly: a time-to-live, a use limit and a generation.

An entry is only used while the tenant's key-state *generation* (``state.py``) is the one
it was filled under, so a shred, rotation or switch made by any process is seen on the
next use. The TTL bounds what no process can observe: a customer revoking its key inside
its own KMS takes effect within the TTL (per tenant, or the cache's default), when every
entry must be unwrapped again and the disabled key refuses. ``forget(tenant)`` drops a
tenant's entries in this process at once.

``TenantKeys`` keeps the entry of the key it encrypts with (``CurrentKey``) rather than
looking it up on every encrypt; it checks the entry as :meth:`DataKeyCache.get` would, and
an entry the cache drops is marked (``expires = -inf``), so a kept one sees the drop too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tenancy.errors import ConfigurationError
from tenancy.keys.envelope import DataKey

_DROPPED = float("-inf")


class CachedKey:
    """One cache entry. ``TenantKeys`` keeps the entry of the key it encrypts with and
    checks it on every use, as :meth:`DataKeyCache.get` would: usable while ``now <
    expires`` and ``left > 0`` (uses left), under the ``generation`` it was filled under.
    An entry the cache drops (stale, replaced, evicted, forgotten) gets ``expires = -inf``,
    so a holder sees the drop on its next use."""

    __slots__ = ("expires", "generation", "left", "value")

    def __init__(self, expires: float, value: DataKey, generation: int, uses: int) -> None:
        self.expires = expires
        self.generation = generation
        self.left = uses
        self.value = value

    def usable(self, now: float, generation: int) -> bool:
        """Fresh, under its use limit, and filled under ``generation``."""
        return now < self.expires and self.left > 0 and self.generation == generation


@dataclass(slots=True)
class MessageCount:
    """Messages this process sealed under one data key: in all, and not yet added to the
    stored count (``TenantKeys`` writes them in batches). Changed under its count lock."""

    sent: int = 0
    unflushed: int = 0


@dataclass(slots=True)
class CurrentKey:
    """The data key ``TenantKeys`` encrypts with for one (tenant, purpose), remembered while
    its unwrapped key may be cached: a warm encrypt touches no database nor provider, and
    finds all it checks here (one dictionary lookup)."""

    entry: CachedKey  # the cache's entry: its TTL, use limit and drop are checked too
    until: float  # the cache TTL or the key's maximum age ends, whichever comes first
    generation: int  # the tenant's key-state generation it was loaded under
    count: MessageCount  # this process's messages under it
    limit: int  # it is worn once count.sent reaches this (stored count + max messages)

    def usable(self, now: float, generation: int) -> bool:
        """Still current: what loading it and ``DataKeyCache.get`` check, one use of the
        cache entry counted (approximate under threads, as in the cache)."""
        entry = self.entry
        if (
            now < self.until
            and self.count.sent < self.limit
            and self.generation == generation
            and entry.usable(now, generation)
        ):
            entry.left -= 1
            return True
        return False


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
        self._entries: dict[Hashable, CachedKey] = {}
        self._lock = threading.Lock()
        # The entry for a key as stored, unchecked (the dict's own lookup: no Python frame
        # on the hot path); use it only through CachedKey.usable or the same checks.
        self.lookup: Callable[[Hashable], CachedKey | None] = self._entries.get

    def get(self, key: tuple[str, str, int], now: float, generation: int = 0) -> DataKey | None:
        """The entry for ``key`` if it is fresh, under its use limit, and was filled
        under ``generation``; else None (and a stale entry is dropped)."""
        # Lock-free on the hot path: a dict read is atomic; the use count is approximate
        # under concurrency, which only makes an entry live a few uses longer or shorter.
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires or entry.left <= 0 or entry.generation != generation:
            self._drop(key, entry)
            return None
        entry.left -= 1
        return entry.value

    def entry(self, key: tuple[str, str, int], now: float, generation: int = 0) -> CachedKey | None:
        """Like :meth:`get` (and counting one use), but the entry itself, for a holder
        that checks it on its next uses (:meth:`CachedKey.usable`)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not entry.usable(now, generation):
            self._drop(key, entry)
            return None
        entry.left -= 1
        return entry

    def put(
        self,
        key: tuple[str, str, int],
        value: DataKey,
        now: float,
        *,
        generation: int = 0,
        ttl: float | None = None,
    ) -> CachedKey:
        """Keep ``value`` for ``ttl`` seconds (default: the cache's), under the
        ``generation`` read *before* it was loaded; returns the new entry."""
        entry = CachedKey(
            now + (self.ttl if ttl is None else ttl), value, generation, self._max_uses
        )
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                old.expires = _DROPPED
            self._entries[key] = entry
            while len(self._entries) > self._max_entries:
                self._entries.pop(next(iter(self._entries))).expires = _DROPPED
        return entry

    def forget(self, tenant_id: str) -> None:
        """Drop every cached data key of ``tenant_id`` in this process (other processes
        learn of a change through the key-state signal, not through this)."""
        with self._lock:
            for key in [k for k in self._entries if isinstance(k, tuple) and k[0] == tenant_id]:
                self._entries.pop(key).expires = _DROPPED

    def _drop(self, key: Hashable, entry: CachedKey) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]
            entry.expires = _DROPPED

    def __len__(self) -> int:
        return len(self._entries)
