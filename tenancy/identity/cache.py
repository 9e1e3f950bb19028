"""A bounded cache of verified tokens, so a hot token is not re-verified per request.

Entries are keyed by a BLAKE2b-256 digest of the token (the token itself is never kept
as a key), and an entry is never served at or after the token's ``exp``: the cache can
only make a valid token cheaper, never make an expired one valid.

Reads take no lock (a dict lookup is atomic in CPython) because they sit on every
request's path; writes lock, and evict oldest-first when the cache is full.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class VerifiedTokenCache(Generic[V]):
    """Map from token digest to a verification result, bounded in size and by ``exp``."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max = max_entries
        self._entries: dict[bytes, tuple[float, V]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def digest(token: bytes | str) -> bytes:
        """The cache key of ``token``: its BLAKE2b-256 digest, so the cache never holds the
        token itself."""
        raw = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
        return hashlib.blake2b(raw, digest_size=32).digest()

    def get(self, digest: bytes, now: float) -> V | None:
        """The cached result for ``digest``, or None if there is none or its ``expires_at``
        is at or before ``now`` (then the entry is dropped too). Takes no lock."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry[0]:
            self.discard(digest)
            return None
        return entry[1]

    def put(self, digest: bytes, value: V, *, expires_at: float) -> None:
        """Cache ``value`` until ``expires_at`` (the token's ``exp``, never later),
        replacing any entry for the digest; the oldest entries are evicted beyond
        ``max_entries``."""
        with self._lock:
            self._entries.pop(digest, None)
            self._entries[digest] = (expires_at, value)
            while len(self._entries) > self._max:
                del self._entries[next(iter(self._entries))]

    def discard_where(self, predicate: Callable[[V], bool]) -> int:
        """Drop every entry whose value matches; returns how many went."""
        with self._lock:
            doomed = [d for d, (_, value) in self._entries.items() if predicate(value)]
            for digest in doomed:
                del self._entries[digest]
        return len(doomed)

    def discard(self, digest: bytes) -> None:
        """Drop the entry for ``digest``, if any."""
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        """Drop every entry: the next use of each token is verified in full again."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
