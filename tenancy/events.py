"""Security events: what the audit log (``tenancy.audit.AuditLog``, a sink) records.

Components emit events to an ``EventSink`` they are given. The sink must not raise into
the request path; ``MemorySink`` keeps them for tests and tools.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

logger = logging.getLogger("tenancy.events")


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One privileged or refused action.

    ``action`` is a stable dotted name such as ``auth.refused`` or ``tenant.suspended``.
    ``tenant_id`` is the tenant the event belongs to, when one is known.
    """

    action: str
    at: datetime
    tenant_id: str | None = None
    actor: str | None = None
    reason: str | None = None
    request_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)


class EventSink(Protocol):
    """Receives security events. Implementations must be thread-safe."""

    def emit(self, event: SecurityEvent) -> None:
        """Record ``event``. Must not raise into the caller's request path, and must be
        safe to call from several threads at once."""


class LoggingSink:
    """Writes events to the ``tenancy.events`` logger; the default when nothing is given."""

    def emit(self, event: SecurityEvent) -> None:
        """Log the event at INFO: action, tenant, actor, reason and request id (``details``
        are left out)."""
        logger.info(
            "%s tenant=%s actor=%s reason=%s request=%s",
            event.action,
            event.tenant_id,
            event.actor,
            event.reason,
            event.request_id,
        )


class MemorySink:
    """Keeps events in memory, in order."""

    def __init__(self) -> None:
        self._events: list[SecurityEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: SecurityEvent) -> None:
        """Append the event (thread-safe)."""
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[SecurityEvent]:
        """A copy of every event emitted so far, in order."""
        with self._lock:
            return list(self._events)

    def actions(self) -> list[str]:
        """The ``action`` of every event emitted so far, in order (what tests usually
        assert)."""
        return [e.action for e in self.events]
