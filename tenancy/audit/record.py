"""The audit record: its canonical form, its hash and the signed chain head.

Format ``v: 1``. A record is the JSON object with the keys ``v``, ``tenant_id``, ``seq``,
``at``, ``action``, ``actor``, ``request_id``, ``reason``, ``details`` and ``prev_hash``,
encoded canonically (sorted keys, ``,``/``:`` separators, ASCII only). Its ``hash`` is
the SHA-256 of those bytes (hex), so it covers the position (``seq``) and the previous
record's hash: changing, deleting, inserting or reordering a record breaks the chain.

The chain head (last ``seq`` and ``hash`` per tenant) is authenticated with
``HMAC-SHA256(key, "tenancy-audit-head/v1" | tenant_id | seq | hash)``. The key is never
stored in the database, so a database role that can rewrite every row still cannot
produce a head that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tenancy.events import SecurityEvent

VERSION = 1
GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = "platform"
"""The chain of events that belong to no tenant (tenant ids are UUIDs: no clash)."""

_HEAD_CONTEXT = b"tenancy-audit-head/v1"


def canonical_json(value: Any) -> str:
    """The canonical encoding records are hashed in: sorted keys, no whitespace, ASCII only,
    so equal records always hash alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def timestamp(at: datetime) -> str:
    """``at`` as the record stores it: UTC, ISO 8601, microseconds (naive = UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored event of one tenant's chain."""

    tenant_id: str
    seq: int
    at: str
    action: str
    actor: str | None
    request_id: str | None
    reason: str | None
    details: Mapping[str, str] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""
    v: int = VERSION

    def body(self) -> dict[str, Any]:
        """The hashed fields (everything but ``hash``)."""
        return {
            "v": self.v,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "at": self.at,
            "action": self.action,
            "actor": self.actor,
            "request_id": self.request_id,
            "reason": self.reason,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
        }

    def computed_hash(self, *, seq: int | None = None) -> str:
        """The SHA-256 (hex) of the record's canonical body, which ``hash`` must equal. With
        ``seq``, the hash the record would have at that position instead (how the verifier
        finds where a moved record was written)."""
        body = self.body()
        if seq is not None:
            body["seq"] = seq
        return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()

    def as_json(self) -> dict[str, Any]:
        """The record as exported (one JSON line each): the body plus ``hash``."""
        return {**self.body(), "hash": self.hash}


def chain(tenant_id: str, seq: int, prev_hash: str, event: SecurityEvent) -> AuditRecord:
    """The record for ``event`` at ``seq`` after a record whose hash is ``prev_hash``."""
    draft = AuditRecord(
        tenant_id=tenant_id,
        seq=seq,
        at=timestamp(event.at),
        action=event.action,
        actor=event.actor,
        request_id=event.request_id,
        reason=event.reason,
        details={str(k): str(v) for k, v in event.details.items()},
        prev_hash=prev_hash,
    )
    return AuditRecord(**{**_fields(draft), "hash": draft.computed_hash()})


def _fields(record: AuditRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in AuditRecord.__slots__}


def head_mac(key: bytes, tenant_id: str, seq: int, last_hash: str) -> str:
    """The HMAC-SHA256 (hex) that authenticates a chain head: ``key`` over the version
    label, ``tenant_id``, the last ``seq`` and its hash. Without the key, which the database
    never holds, no one can make a head that verifies."""
    message = b"|".join((_HEAD_CONTEXT, tenant_id.encode(), str(seq).encode(), last_hash.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_mac_ok(key: bytes, tenant_id: str, seq: int, last_hash: str, mac: str) -> bool:
    """Whether ``mac`` is the head MAC of these values (compared in constant time)."""
    return hmac.compare_digest(head_mac(key, tenant_id, seq, last_hash), mac)
