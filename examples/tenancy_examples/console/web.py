"""The console's web plumbing: server-side sessions, CSRF tokens, forms, headers.

The admin's access token never goes back to the browser: it stays in this process's
memory, keyed by a random session id that the browser holds in an HttpOnly,
SameSite=Strict cookie. A session lives no longer than its token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_FORM_BYTES = 16 * 1024
MAX_SESSIONS = 10_000
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class Refused(Exception):
    """Answer with the refusal page: ``status`` and a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInAgain(Exception):
    """No session, or its token no longer verifies: back to the login page."""


@dataclass
class Session:
    token: str = field(repr=False)
    expires_at: float  # the token's exp: the session ends with it
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (error|done, text)

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken

    def csrf_ok(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionStore:
    """Sessions in memory (one console process); expired ones are pruned on login."""

    def __init__(self, *, limit: int = MAX_SESSIONS) -> None:
        self._sessions: dict[str, Session] = {}
        self._limit = limit

    def create(self, token: str, *, expires_at: float, now: float) -> str:
        for sid in [s for s, v in self._sessions.items() if v.expires_at <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= self._limit:  # the oldest goes first
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = Session(token, expires_at)
        return sid

    def get(self, sid: str | None) -> Session | None:
        return None if not sid else self._sessions.get(sid)

    def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)


class LoginGuard:
    """CSRF for the login form, before any session: the form carries an HMAC of a
    random nonce that only a SameSite=Strict, HttpOnly cookie holds."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(32)
        return nonce, self._mac(nonce)

    def check(self, nonce: str | None, presented: str) -> bool:
        return bool(nonce) and hmac.compare_digest(
            presented.encode(), self._mac(nonce or "").encode()
        )

    def _mac(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (what browsers send); anything else is refused."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "The form is too large.")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded" and (kind or body):
        raise Refused(415, "This form must be sent by the console's own page.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "The form could not be read.") from exc
    return dict(pairs)


def set_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    path: str,
    secure: bool,
    max_age: int | None = None,
) -> None:
    """Never readable by scripts, never sent on cross-site requests."""
    response.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=secure
    )


def clear_cookie(response: Response, name: str, *, path: str, secure: bool) -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=secure)


def chosen_duration(value: str, requested: timedelta, maximum: timedelta) -> timedelta | None:
    """The duration the admin picked (seconds), if it is one of those offered."""
    offered = {str(int(d.total_seconds())): d for d in durations_for(requested, maximum)}
    return offered.get(value)


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in self._headers if k not in names]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


# -- presentation ----------------------------------------------------------------------

LADDER = tuple(timedelta(minutes=m) for m in (15, 30, 60, 120, 240, 480, 720, 1440))


def durations_for(requested: timedelta, maximum: timedelta) -> list[timedelta]:
    """What the admin may choose: the usual steps up to the request and the maximum,
    and the requested duration itself."""
    limit = min(requested, maximum)
    return sorted({d for d in LADDER if d <= limit} | {limit})


def human_duration(value: timedelta | None) -> str:
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins else "",
    ]
    return " ".join(p for p in parts if p) or f"{int(value.total_seconds())} s"


def details(detail: dict[str, Any]) -> str:
    """A trail entry's details as a person reads them."""
    shown = []
    for key, value in sorted(detail.items()):
        if key == "seconds" and isinstance(value, int | float):
            shown.append(f"duration: {human_duration(timedelta(seconds=value))}")
        elif key == "write":
            shown.append(f"changes allowed: {'yes' if value else 'no'}")
        elif isinstance(value, list):
            shown.append(f"{key.replace('_', ' ')}: {', '.join(map(str, value))}")
        else:
            shown.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(shown)


def when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
