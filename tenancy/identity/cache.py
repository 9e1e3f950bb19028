"""A bounded cache of verified tokens, so a hot token is not re-verified per request.

Entries are keyed by a SHA-256 of the token (the token itself is never kept as a key),
and an entry is never served at or after the token's ``exp``: the cache can only make a
valid token cheaper, never make an expired one valid.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class VerifiedTokenCache(Generic[V]):
    """LRU map from token hash to a verification result, bounded in size and by ``exp``."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max = max_entries
        self._entries: OrderedDict[bytes, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, digest: bytes, now: float) -> V | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            expires_at, value = entry
            if now >= expires_at:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return value

    def put(self, digest: bytes, value: V, *, expires_at: float) -> None:
        with self._lock:
            self._entries[digest] = (expires_at, value)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
