"""Key state shared between processes: a change made anywhere is seen on the next use.

Each process caches unwrapped data keys (``cache.py``). A platform-side change to a
tenant's keys — shred, KEK rotation, data-key rotation, a switch to the customer's key,
a TTL change — is made by one process (often the CLI) and must stop every other process
from using what it cached, at once, not when a TTL runs out. A :class:`KeyStateSignal`
carries that news: each change bumps the tenant's *generation*, and every cache entry
remembers the generation it was filled under. A use whose generation differs is a miss,
and the miss re-reads the truth (the database and the key provider).

The reader takes the generation *before* it loads, so a change that commits while it
loads is caught on the next use. The check costs one lookup per encrypt or decrypt
(measured in ``bench/keys.py``).

===================== ==================================================================
``ProcessKeyState``   one process only (tests, a single worker)
``SharedKeyState``    processes on one host (the demo's services and its CLI): 4,096
                      64-bit counters in a memory-mapped file, bumped under ``flock``
``RedisKeyState``     replicas on several hosts (``tenancy.keys.redis_state``)
===================== ==================================================================

What the platform cannot observe — a customer disabling its own key inside its KMS or
HSM — is bounded by the cache TTL instead (per tenant: ``TenantKeys.set_cache_ttl``).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Protocol, runtime_checkable

SLOTS = 4096
_COUNTER = struct.Struct("<Q")


@runtime_checkable
class KeyStateSignal(Protocol):
    """Where processes learn that a tenant's key state changed."""

    def generation(self, tenant_id: str) -> int:
        """The tenant's current generation (hot path: called on every use)."""

    def changed(self, tenant_id: str) -> None:
        """Announce a change; returns once every process's next use will see it."""


class ProcessKeyState:
    """Generations in this process only: right for one process, wrong for several."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()

    def generation(self, tenant_id: str) -> int:
        """The tenant's generation in this process (0 until its first change)."""
        return self._generations.get(tenant_id, 0)

    def changed(self, tenant_id: str) -> None:
        """Bump the tenant's generation; only this process's caches see it."""
        with self._lock:
            self._generations[tenant_id] = self._generations.get(tenant_id, 0) + 1


class SharedKeyState:
    """Generations in a memory-mapped file that every process on the host maps.

    A tenant hashes to one of 4,096 counters; two tenants sharing a counter only cost
    each other an extra unwrap. Readers take no lock: a counter is read with one aligned
    8-byte load, and a value read half-written differs from the old one, which can only
    cause an extra miss. Writers increment under an exclusive ``flock``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        size = SLOTS * _COUNTER.size
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._offsets: dict[str, int] = {}

    def generation(self, tenant_id: str) -> int:
        """The counter of the tenant's slot, read without a lock. Tenants sharing a slot
        share the generation: one's change also invalidates the other's cache (an extra
        unwrap, never a stale key)."""
        offset = self._offsets.get(tenant_id)
        if offset is None:
            offset = self._offsets[tenant_id] = _slot(tenant_id) * _COUNTER.size
        return int(_COUNTER.unpack_from(self._map, offset)[0])

    def changed(self, tenant_id: str) -> None:
        """Increment the tenant's slot under an exclusive ``flock``; every process mapping
        the file sees it on its next use. Wraps around at 2**64."""
        offset = _slot(tenant_id) * _COUNTER.size
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            value = _COUNTER.unpack_from(self._map, offset)[0]
            _COUNTER.pack_into(self._map, offset, (value + 1) % 2**64)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Unmap the file and close it; this object cannot be used afterwards (other
        processes and the file are unaffected)."""
        self._map.close()
        os.close(self._fd)

    def __repr__(self) -> str:
        return f"SharedKeyState({str(self.path)!r})"


def _slot(tenant_id: str) -> int:
    return zlib.crc32(tenant_id.encode("utf-8")) % SLOTS
