"""The ticketing system tells support access when a ticket closes.

A closed ticket ends its grants 24 hours later at the latest (``TICKET_GRACE``); an
earlier end (approval + duration, revocation) still wins. Two ways in:

- in process: ``apply(support, TicketEvent(kind="closed", ...))``;
- over HTTP: :func:`webhook_app`, a small ASGI app the deployment mounts, which accepts
  ``POST /tickets/events`` with the JSON body ``{"kind", "ticket_id", "tenant"}``
  (``tenant`` is a slug or an id) signed by the ticketing system::

      X-Tenancy-Timestamp: <unix seconds>
      X-Tenancy-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

The webhook refuses, as RFC 9457 problem+json and changing nothing: a missing or wrong
signature, a timestamp more than ``max_skew`` seconds away from now, a signature already
seen while its timestamp is inside that window (a replay), a body that is not the JSON
object above, an unknown ``kind`` and an unknown tenant. Which check refused an
unauthenticated request goes to the log and the security events only.

The seen signatures live in one process (:class:`MemoryReplayGuard`); replicas behind a
load balancer need a shared :class:`ReplayGuard` (see ``tenancy.propagation.replay``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy.clock import Clock
from tenancy.errors import (
    ConfigurationError,
    InvalidRequest,
    InvalidSignature,
    TenancyError,
    UnknownTenant,
)
from tenancy.events import EventSink, SecurityEvent
from tenancy.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX, problem_response
from tenancy.propagation.replay import MemoryReplayGuard, ReplayGuard
from tenancy.support.model import Grant
from tenancy.tenants import Tenant, TenantRegistry

__all__ = [
    "EVENTS_PATH",
    "MIN_SECRET_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InvalidSignature",
    "TicketEvent",
    "TicketSink",
    "apply",
    "sign",
    "webhook_app",
]

logger = logging.getLogger("tenancy.support.tickets")

EVENTS_PATH = "/tickets/events"
TIMESTAMP_HEADER = "X-Tenancy-Timestamp"
SIGNATURE_HEADER = "X-Tenancy-Signature"
MIN_SECRET_BYTES = 32
MAX_BODY_BYTES = 16 * 1024
MAX_TICKET_ID = 128  # the grants table's ticket_id column
KINDS = ("opened", "closed")

_DIGITS = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")

TicketKind = Literal["opened", "closed"]


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """A ticket opened or closed in the ticketing system."""

    kind: TicketKind
    ticket_id: str
    tenant_id: str
    at: datetime


class TicketSink(Protocol):
    """What ticket events need from support access (``SupportAccess`` is one)."""

    def close_ticket(
        self, ticket_id: str, *, tenant_id: str, at: datetime | None = None
    ) -> list[Grant]:
        """Record that ``tenant_id``'s ticket closed at ``at`` (default now): its grants end
        24 hours later at the latest. Returns the grants changed; never another tenant's."""


def apply(support: TicketSink, event: TicketEvent) -> list[Grant]:
    """Apply ``event``: "closed" ends the ticket's grants of that tenant 24 hours from now
    at the latest and returns them; "opened" changes nothing (it is logged)."""
    if event.kind == "closed":
        return support.close_ticket(event.ticket_id, tenant_id=event.tenant_id, at=event.at)
    if event.kind == "opened":
        logger.info("ticket %s opened for tenant %s", event.ticket_id, event.tenant_id)
        return []
    raise InvalidRequest(f"unknown ticket event kind {event.kind!r}")


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Tenancy-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_app(
    support: TicketSink,
    *,
    secret: bytes,
    clock: Clock,
    tenants: TenantRegistry,
    max_skew: int = 300,
    replay: ReplayGuard | None = None,
    events: EventSink | None = None,
) -> Starlette:
    """The ticket webhook as an ASGI app serving ``POST /tickets/events``.

    ``secret`` is shared with the ticketing system (at least 32 bytes); ``max_skew`` is
    how far (seconds) a request's timestamp may be from ``clock``; ``replay`` remembers
    the signatures seen (default: in this process); refusals go to ``events`` too.
    """
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"the webhook secret must be at least {MIN_SECRET_BYTES} random bytes"
        )
    if isinstance(max_skew, bool) or not isinstance(max_skew, int) or max_skew <= 0:
        raise ConfigurationError("max_skew must be a positive number of seconds")
    guard: ReplayGuard = replay if replay is not None else MemoryReplayGuard()

    def refuse(request: Request, exc: TenancyError, reason: str) -> Response:
        logger.warning("ticket webhook refused: %s", reason)
        if events is not None:
            events.emit(
                SecurityEvent(
                    action="support.ticket_webhook_refused",
                    at=clock.now(),
                    actor="ticketing",
                    reason=reason,
                )
            )
        return problem_response(exc, instance=request.url.path, realm="tenancy-tickets")

    async def receive(request: Request) -> Response:
        # 1. Authenticate the raw bytes before reading anything out of them.
        raw_ts = request.headers.get(TIMESTAMP_HEADER, "")
        raw_sig = request.headers.get(SIGNATURE_HEADER, "")
        if not raw_ts or not raw_sig:
            return refuse(request, InvalidSignature("missing"), "missing timestamp or signature")
        match = _SIGNATURE.fullmatch(raw_sig.strip())
        if not _DIGITS.fullmatch(raw_ts) or match is None:
            return refuse(
                request, InvalidSignature("malformed"), "malformed timestamp or signature header"
            )
        body = await _read_body(request)
        if body is None:
            return _too_large(request)
        expected = sign(secret, raw_ts, body)
        if not hmac.compare_digest(
            expected.encode("ascii"), ("sha256=" + match.group(1).lower()).encode("ascii")
        ):
            return refuse(request, InvalidSignature("mismatch"), "signature mismatch")
        sent_at, now = int(raw_ts), clock.timestamp()
        if abs(now - sent_at) > max_skew:
            return refuse(
                request,
                InvalidSignature("stale"),
                f"timestamp {sent_at} outside +-{max_skew} s of now",
            )
        # Held while the timestamp is still acceptable (the window's edge included).
        if not guard.first_use(expected, expires_at=sent_at + max_skew + 1, now=now):
            return refuse(request, InvalidSignature("replay"), "signature already used")

        # 2. Authenticated: read the event.
        try:
            event = await anyio.to_thread.run_sync(
                _event, body, tenants, datetime.fromtimestamp(sent_at, UTC)
            )
            closed = await anyio.to_thread.run_sync(apply, support, event)
        except (InvalidRequest, UnknownTenant) as exc:
            return refuse(request, exc, str(exc))
        logger.info(
            "ticket %s %s for tenant %s: %d grant(s)",
            event.ticket_id,
            event.kind,
            event.tenant_id,
            len(closed),
        )
        return JSONResponse(
            {"kind": event.kind, "ticket_id": event.ticket_id, "grants": [g.id for g in closed]},
            status_code=200 if event.kind == "closed" else 202,
        )

    return Starlette(routes=[Route(EVENTS_PATH, receive, methods=["POST"])])


async def _read_body(request: Request) -> bytes | None:
    """The raw body, or ``None`` once it exceeds ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(request: Request) -> Response:
    body = {
        "type": TYPE_PREFIX + "payload-too-large",
        "title": "Payload too large",
        "status": 413,
        "code": "payload-too-large",
        "instance": request.url.path,
    }
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=413, media_type=PROBLEM_MEDIA_TYPE
    )


def _event(body: bytes, tenants: TenantRegistry, at: datetime) -> TicketEvent:
    try:
        document: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("the body is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidRequest("the body must be a JSON object")
    problems = {}
    for name in ("kind", "ticket_id", "tenant"):
        value = document.get(name)
        if not isinstance(value, str) or not value.strip():
            problems[name] = "a non-empty string is required"
    if problems:
        raise InvalidRequest("the event is incomplete", errors=problems)
    kind, ticket_id = document["kind"], document["ticket_id"].strip()
    if kind not in KINDS:
        raise InvalidRequest(
            f"unknown ticket event kind; expected one of {', '.join(KINDS)}",
            errors={"kind": "unknown"},
        )
    if len(ticket_id) > MAX_TICKET_ID:
        raise InvalidRequest("the ticket id is too long", errors={"ticket_id": "too long"})
    tenant = _tenant(tenants, document["tenant"].strip())
    return TicketEvent(kind=kind, ticket_id=ticket_id, tenant_id=tenant.id, at=at)


def _tenant(tenants: TenantRegistry, slug_or_id: str) -> Tenant:
    try:
        return tenants.get_by_slug(slug_or_id)
    except UnknownTenant:
        return tenants.get(slug_or_id)
