"""Decisions remembered per input (minus time) and policy revision.

The key is every fact the policy reads except ``now``: the principal (a frozen value:
issuer, tenant, subject, kind, roles, scopes, assurance), the caller and support grant,
the tenant and its status, the action and the resource, and the policy revision. A
change of policy data moves the revision, so every earlier entry is unreachable at once
(a removed role is effective on the next request). An entry also ends at the decision's
``valid_until`` and at ``max_age`` at the latest.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from tenancy.authz.decision import Decision
from tenancy.errors import ConfigurationError


class DecisionCache:
    """Bounded map from decision key to decision; reads take no lock."""

    def __init__(self, *, max_entries: int = 50_000, max_age: float = 60.0) -> None:
        if max_entries < 1 or max_age <= 0:
            raise ConfigurationError("max_entries must be >= 1 and max_age > 0")
        self._max = max_entries
        self._max_age = max_age
        self._entries: dict[Hashable, tuple[float, Decision]] = {}
        self._lock = threading.Lock()
        self._revision = 0

    def get(self, key: Hashable, now: float) -> Decision | None:
        """The cached decision for ``key``, or None if there is none or it has expired at
        ``now`` (then it is dropped). Takes no lock on a hit."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry[0]:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: Hashable, decision: Decision, now: float) -> None:
        """Remember ``decision`` until the earliest of ``now + max_age`` and its
        ``valid_until``. Not stored if that is already past, or if the decision was made
        under a revision older than the cache's latest invalidation (a decision that raced a
        policy change). The oldest entries are evicted beyond ``max_entries``."""
        until = now + self._max_age
        if decision.valid_until is not None:
            until = min(until, decision.valid_until)
        if until <= now:
            return
        with self._lock:
            if decision.revision < self._revision:
                return  # decided under data that has changed since
            self._entries.pop(key, None)
            self._entries[key] = (until, decision)
            while len(self._entries) > self._max:
                del self._entries[next(iter(self._entries))]

    def invalidate(self, revision: int) -> None:
        """Forget everything decided before ``revision``."""
        with self._lock:
            self._revision = max(self._revision, revision)
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
