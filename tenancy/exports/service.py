"""Per-tenant exports with an access window: a snapshot, then a signed, expiring link.

``ExportService.create`` runs inside the caller's tenant context: it reads the tenant's
rows through ``source`` (a callable that is itself tenant-scoped, e.g. a store's listing
through a ``TenantSession``), renders them as JSON or CSV (the ``fields`` it is given, in
order), seals the content under the tenant's data key into ``tenancy_exports`` and
returns a link token. What a deployment exports is its own: an :class:`ExportSource`
names the rows and the fields together.

The token is itsdangerous' URL-safe signed JSON (``URLSafeSerializer``): the payload
``{"v": 1, "x": export id, "t": tenant id, "e": expiry (epoch seconds)}`` and an
HMAC-SHA256 under a key derived (HMAC) from a dedicated signing key (>= 32 bytes) and the
salt :data:`LINK_SALT`, which keeps these signatures apart from any other use of a key.
Retired keys (``previous_keys``) still verify; only the current one signs.

The expiry is in the signed payload and compared with the injected clock, not with
itsdangerous' ``max_age``: that one reads ``time.time()`` and counts from signing with
the verifier's window, while a link's end is fixed when it is made (the ``expires_at``
its creator was told) and tests freeze time instead of patching it.

``download`` checks, in order: format and signature (:class:`ExportLinkInvalid`), expiry
(:class:`ExportLinkExpired`), the caller's bound tenant (:class:`ExportTenantMismatch`),
and that the export still exists in the caller's tenant (:class:`ExportGone`). Every
creation, download and refusal is a security event.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker, undefer

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import current, current_or_none
from tenancy.errors import (
    ConfigurationError,
    ExportError,
    ExportGone,
    ExportLinkExpired,
    ExportLinkInvalid,
    ExportTenantMismatch,
    InvalidRequest,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.exports.model import ExportRecord
from tenancy.keys import TenantKeys
from tenancy.keys.columns import SESSION_KEYS
from tenancy.scoping import TenantSession

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
MIN_KEY_BYTES = 32
LINK_SALT = "tenancy.exports.link/v1"
_VERSION = 1
# Cells a spreadsheet would run as a formula (CSV injection, OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Source = Callable[[], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class ExportSource:
    """What a deployment exports: the bound tenant's rows (``rows()`` is called inside
    its context and must be tenant-scoped) and the CSV columns, in order."""

    rows: Source
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExportLink:
    """What ``create`` returns: the export and the token of its download link."""

    export_id: str
    tenant_id: str
    format: str
    rows: int
    expires_at: datetime
    token: str


@dataclass(frozen=True, slots=True)
class ExportDownload:
    """A verified download: the content and how to serve it."""

    export_id: str
    tenant_id: str
    format: str
    media_type: str
    filename: str
    content: bytes


class ExportService:
    """Create exports of the bound tenant's data and serve them through signed links.

    Args:
        engine: holds ``tenancy_exports`` (see :func:`tenancy.exports.create_schema`).
        source: returns the bound tenant's rows as mappings (called in its context).
        keys: seals the content under the tenant's data key (purpose ``exports``).
        signing_key: the links' signing key, dedicated to this use, at least 32 bytes.
        previous_keys: retired signing keys that still verify links (rotation).
        window: how long a link is valid after creation.
        fields: CSV columns, in order (JSON carries every field of every row).

    Raises:
        ConfigurationError: a signing key shorter than 32 bytes, a window that is not
            positive, or no fields.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        source: Source,
        fields: Sequence[str],
        keys: TenantKeys,
        signing_key: bytes,
        previous_keys: Sequence[bytes] = (),
        clock: Clock = SYSTEM_CLOCK,
        events: EventSink | None = None,
        window: timedelta = timedelta(hours=24),
    ) -> None:
        for key in (signing_key, *previous_keys):
            if len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(f"export signing keys need >= {MIN_KEY_BYTES} bytes")
        if window <= timedelta(0):
            raise ConfigurationError("the export access window must be positive")
        if isinstance(fields, str) or not fields:
            raise ConfigurationError("an export needs its fields (the CSV columns, in order)")
        self._engine = engine
        self._source = source
        # itsdangerous signs with the last key and verifies with any of them.
        self._links = URLSafeSerializer(
            [*previous_keys, signing_key],
            salt=LINK_SALT,
            fallback_signers=[],
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
        )
        self._clock = clock
        self._events = events if events is not None else LoggingSink()
        self._window = window
        self._fields = tuple(fields)
        self._sessions = sessionmaker(
            engine, class_=TenantSession, expire_on_commit=False, info={SESSION_KEYS: keys}
        )

    # -- create --------------------------------------------------------------------------

    def create(self, format: str = "json") -> ExportLink:
        """Snapshot the bound tenant's rows and return the export's link.

        Raises:
            NoTenantContext: no tenant is bound.
            InvalidRequest: ``format`` is neither ``json`` nor ``csv``.
            KeyUnavailable: the tenant's key cannot seal the content.
        """
        ctx = current()
        if format not in FORMATS:
            raise InvalidRequest(
                "unsupported export format", errors={"format": "must be one of: csv, json"}
            )
        now = self._clock.now()
        rows = list(self._source())
        export_id = str(uuid.uuid4())
        content = (
            self._json(rows, ctx.tenant_id, export_id, now) if format == "json" else self._csv(rows)
        )
        expires_at = now + self._window
        record = ExportRecord(
            id=export_id,
            format=format,
            created_at=now,
            expires_at=expires_at,
            created_by=ctx.principal.subject,
            rows=len(rows),
            size=len(content),
            content=content,
        )
        with self._sessions() as session:
            session.add(record)  # tenant_id is stamped by the scoping layer
            session.commit()
        token = self._sign(export_id, ctx.tenant_id, expires_at)
        self._emit(
            "export.created",
            ctx.tenant_id,
            export_id=export_id,
            format=format,
            rows=str(len(rows)),
            bytes=str(len(content)),
            expires_at=expires_at.isoformat(),
        )
        return ExportLink(export_id, ctx.tenant_id, format, len(rows), expires_at, token)

    # -- download ------------------------------------------------------------------------

    def download(self, token: str) -> ExportDownload:
        """Verify ``token`` for the bound tenant and return the export's content.

        Raises:
            NoTenantContext: no tenant is bound.
            ExportLinkInvalid / ExportLinkExpired / ExportTenantMismatch / ExportGone.
        """
        ctx = current()
        try:
            export_id, tenant_id, expires = self._verify(token)
            if self._clock.now().timestamp() >= expires:
                raise ExportLinkExpired("the export link has expired")
            if tenant_id != ctx.tenant_id:
                raise ExportTenantMismatch("no such export")
            with self._sessions() as session:
                record = session.scalars(
                    select(ExportRecord)
                    .options(undefer(ExportRecord.content))
                    .where(ExportRecord.id == export_id)
                ).first()
            if record is None:
                raise ExportGone("the export no longer exists")
        except ExportError as refused:
            self._emit("export.refused", ctx.tenant_id, reason=refused.code)
            raise
        self._emit(
            "export.downloaded",
            ctx.tenant_id,
            export_id=record.id,
            format=record.format,
            bytes=str(len(record.content)),
        )
        return ExportDownload(
            record.id,
            record.tenant_id,
            record.format,
            FORMATS[record.format],
            f"export-{record.id}.{record.format}",
            bytes(record.content),
        )

    def link(self, export_id: str, tenant_id: str, expires_at: datetime) -> str:
        """The token for an export (what ``create`` returns); for tools and tests."""
        return self._sign(export_id, tenant_id, expires_at)

    # -- internals -----------------------------------------------------------------------

    def _sign(self, export_id: str, tenant_id: str, expires_at: datetime) -> str:
        return self._links.dumps(
            {"v": _VERSION, "x": export_id, "t": tenant_id, "e": int(expires_at.timestamp())}
        )

    def _verify(self, token: str) -> tuple[str, str, int]:
        try:
            # The signature is checked before the payload is decoded at all.
            claims = self._links.loads(token)
        except (BadData, UnicodeError) as exc:  # UnicodeError: text no URL could carry
            raise ExportLinkInvalid("the export link does not verify") from exc
        if not isinstance(claims, dict) or claims.get("v") != _VERSION:
            raise ExportLinkInvalid("malformed export link")
        export_id, tenant_id, expires = claims.get("x"), claims.get("t"), claims.get("e")
        if not (isinstance(export_id, str) and isinstance(tenant_id, str) and type(expires) is int):
            raise ExportLinkInvalid("malformed export link")
        return export_id, tenant_id, expires

    def _json(
        self, rows: list[Mapping[str, Any]], tenant_id: str, export_id: str, now: datetime
    ) -> bytes:
        document = {
            "export_id": export_id,
            "tenant_id": tenant_id,
            "created_at": now.isoformat(),
            "items": rows,
        }
        return json.dumps(document, default=str, ensure_ascii=False, indent=1).encode()

    def _csv(self, rows: list[Mapping[str, Any]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self._fields)
        for row in rows:
            writer.writerow([_cell(row.get(name)) for name in self._fields])
        return out.getvalue().encode("utf-8")

    def _emit(self, action: str, tenant_id: str, **details: str) -> None:
        ctx = current_or_none()
        self._events.emit(
            SecurityEvent(
                action=action,
                at=self._clock.now(),
                tenant_id=tenant_id,
                actor=None if ctx is None else ctx.principal.subject,
                reason=details.pop("reason", None),
                request_id=None if ctx is None else ctx.request_id,
                details=details,
            )
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    # A leading quote keeps spreadsheets from evaluating the cell as a formula.
    return "'" + text if text.startswith(_FORMULA_START) else text
