"""Refusing a context token's second use: a set of seen ``jti`` values, kept until ``exp``.

A context token is minted per call, so seeing its ``jti`` twice within its lifetime means
somebody captured and replayed it. The in-memory guard protects one process. Replicas
behind a load balancer need a shared store; any store with an atomic "set if absent,
expire at" works, e.g. Redis ``SET tenancy:jti:<jti> 1 NX EXAT <exp>`` (refuse when it
answers nil) or a table with a unique ``jti`` column that a job prunes past ``exp``.
Implement :class:`ReplayGuard` over it and pass it to ``ContextTokenVerifier(replay=...)``.
"""

from __future__ import annotations

import heapq
import threading
from typing import Protocol

from tenancy.errors import ConfigurationError


class ReplayGuard(Protocol):
    """Records token ids; thread-safe."""

    def first_use(self, jti: str, *, expires_at: float, now: float) -> bool:
        """Record ``jti`` and return True, or return False if it was seen before and
        has not expired. Must fail closed: return False when it cannot record."""


class MemoryReplayGuard:
    """Seen ``jti`` values of one process, forgotten once their token has expired.

    Bounded: when ``max_entries`` unexpired ids are held, further tokens are refused
    (fail closed) rather than evicting an id whose token could still be replayed. Size it
    for peak calls per second times the token lifetime (60 s): the default holds 60 s of
    ~8,000 calls/s.
    """

    def __init__(self, *, max_entries: int = 500_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be >= 1")
        self._max = max_entries
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def first_use(self, jti: str, *, expires_at: float, now: float) -> bool:
        """Record ``jti`` until ``expires_at`` and return True, or return False if it is
        already recorded and unexpired, or if ``max_entries`` unexpired ids are held (fail
        closed: no id is evicted early). Only this process's tokens are seen: replicas need
        a shared guard."""
        with self._lock:
            self._forget_expired(now)
            if jti in self._seen:
                return False
            if len(self._seen) >= self._max:
                return False
            self._seen[jti] = expires_at
            heapq.heappush(self._expiries, (expires_at, jti))
            return True

    def _forget_expired(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, jti = heapq.heappop(expiries)
            self._seen.pop(jti, None)

    def __len__(self) -> int:
        return len(self._seen)
