"""Telling people about support access: request, approval, first use, expiry, revocation.

``Notifier`` is the extension point; the default logs, and ``OutboxNotifier`` also
writes each notice as an email-shaped JSON file (to, subject, body) for a mailer to send.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

logger = logging.getLogger("tenancy.support")


@dataclass(frozen=True, slots=True)
class Notice:
    """One message about a grant for a person to read: ``kind`` says which step (requested,
    approved, denied, first_use, expired, revoked, break_glass), ``to`` says whom
    (``tenant-admins:<tenant id>`` or the engineer's subject)."""

    kind: str  # requested, approved, denied, first_use, expired, revoked, break_glass
    tenant_id: str
    grant_id: str
    to: str  # "tenant-admins:<tenant id>" or the engineer's subject
    subject: str
    body: str
    details: dict[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    """Where notices go (email, chat, a queue). Support access calls it after the step is
    stored, so a notifier that raises fails the call without undoing the step."""

    def notify(self, notice: Notice) -> None:
        """Deliver one notice; raise if it cannot be delivered."""


class LoggingNotifier:
    """The default notifier: logs each notice on ``tenancy.support`` at INFO (kind, tenant,
    grant, recipient and subject; not the body)."""

    def notify(self, notice: Notice) -> None:
        """Log the notice (the body is left out)."""
        logger.info(
            "support %s tenant=%s grant=%s to=%s: %s",
            notice.kind,
            notice.tenant_id,
            notice.grant_id,
            notice.to,
            notice.subject,
        )


class OutboxNotifier:
    """Logs, and writes ``<outbox>/<n>-<kind>.json`` per notice (0600)."""

    def __init__(self, outbox: str | Path) -> None:
        self._outbox = Path(outbox)
        self._outbox.mkdir(parents=True, exist_ok=True)
        self._log = LoggingNotifier()

    def notify(self, notice: Notice) -> None:
        """Log the notice, then write it as JSON to a new file (0600, created exclusively,
        so an existing file is never overwritten).

        Raises:
            OSError: the outbox cannot be written; the notice is then lost.
        """
        self._log.notify(notice)
        name = f"{os.urandom(6).hex()}-{notice.kind}.json"
        fd = os.open(self._outbox / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(notice), handle, indent=2)

    def notices(self) -> list[Notice]:
        """Every notice in the outbox. Ordered by file name, whose prefix is random: not the
        order they were written in."""
        return [Notice(**json.loads(p.read_text())) for p in sorted(self._outbox.glob("*.json"))]


class MemoryNotifier:
    """Keeps notices in ``notices`` (a list), for tests."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        """Append the notice to ``notices``."""
        self.notices.append(notice)
