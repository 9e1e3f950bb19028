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
    kind: str  # requested, approved, denied, first_use, expired, revoked, break_glass
    tenant_id: str
    grant_id: str
    to: str  # "tenant-admins:<tenant id>" or the engineer's subject
    subject: str
    body: str
    details: dict[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    def notify(self, notice: Notice) -> None: ...


class LoggingNotifier:
    def notify(self, notice: Notice) -> None:
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
        self._log.notify(notice)
        name = f"{os.urandom(6).hex()}-{notice.kind}.json"
        fd = os.open(self._outbox / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(notice), handle, indent=2)

    def notices(self) -> list[Notice]:
        return [Notice(**json.loads(p.read_text())) for p in sorted(self._outbox.glob("*.json"))]


class MemoryNotifier:
    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.notices.append(notice)
