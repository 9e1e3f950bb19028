"""TenancyMiddleware: establish the tenant context at the edge, or refuse.

A pure ASGI middleware (never ``BaseHTTPMiddleware``, which breaks ContextVar
propagation). Per HTTP or WebSocket connection:

1. strip every header that names a tenant (``X-Tenant-ID``, ``x_tenant_id``, ...) and
   tenant entries of ``baggage``/``tracestate``, so the app cannot be tempted by them;
2. authenticate the bearer token (``TokenVerifier``);
3. resolve the tenant from the token's ``tid`` only, and refuse it unless active and
   homed in this service's region;
4. bind a ``TenantContext`` for the app call and always unbind it, even on cancellation.

Refusals are RFC 9457 problem responses (``tenancy.problems``) and security events.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import TenantContext, bind
from tenancy.errors import (
    ConfigurationError,
    InvalidToken,
    MissingCredentials,
    NotFound,
    TenancyError,
    UnknownTenant,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.identity.verifier import TokenVerifier
from tenancy.problems import problem_response
from tenancy.tenants.model import Tenant, validate_region
from tenancy.tenants.registry import TenantRegistry

Headers = list[tuple[bytes, bytes]]

REQUEST_ID_HEADER = b"x-request-id"
_MEMBER_LISTS = (b"baggage", b"tracestate")


class TenancyMiddleware:
    """Binds a verified ``TenantContext`` for every non-public request.

    Args:
        app: the ASGI app to protect.
        verifier: verifies bearer access tokens.
        tenants: resolves the token's ``tid`` to a tenant.
        region: this service instance's region; tenants homed elsewhere are refused.
        public_paths: exact paths served without authentication (health checks). They
            still get the header stripping, and no context is bound for them.
        tenant_path_prefix: if set (e.g. ``"/t/"``), the path segment after it must be
            the caller's own tenant slug; any other slug, known or not, is a 404.
        strip_headers: further header names that name a tenant in your deployment.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        tenants: TenantRegistry,
        region: str,
        public_paths: Iterable[str] = ("/healthz",),
        tenant_path_prefix: str | None = None,
        strip_headers: Collection[str] = (),
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        realm: str = "tenancy",
    ) -> None:
        if not isinstance(verifier, TokenVerifier):
            raise ConfigurationError("TenancyMiddleware needs a TokenVerifier")
        if tenant_path_prefix is not None and not (
            tenant_path_prefix.startswith("/") and tenant_path_prefix.endswith("/")
        ):
            raise ConfigurationError("tenant_path_prefix must start and end with '/'")
        self.app = app
        self._verifier = verifier
        self._tenants = tenants
        self._region = validate_region(region)
        self._public = frozenset(public_paths)
        self._path_prefix = tenant_path_prefix
        self._extra_strip = frozenset(_normalize(h.encode("latin-1")) for h in strip_headers)
        self._events = events or LoggingSink()
        self._clock = clock
        self._realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers, authorizations = self._sanitize(scope["headers"])
        scope = {**scope, "headers": headers}
        if scope["path"] in self._public:
            await self.app(scope, receive, send)
            return

        request_id = uuid.uuid4().hex
        try:
            ctx = await self._establish(authorizations, scope["path"], request_id)
        except TenancyError as exc:
            self._refused(exc, request_id)
            await self._refuse(exc, scope, receive, send, request_id)
            return

        scope["tenancy"] = ctx
        rid = request_id.encode()

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
            await send(message)

        with bind(ctx):
            await self.app(scope, receive, send_with_request_id)

    async def _establish(
        self, authorizations: list[bytes], path: str, request_id: str
    ) -> TenantContext:
        token = _bearer_token(authorizations)
        verified = await self._verifier.verify_async(token)
        principal = verified.principal
        tenant = await self._resolve(principal.tenant_id)
        tenant.ensure_servable(region=self._region)
        if self._path_prefix is not None and path.startswith(self._path_prefix):
            slug = path[len(self._path_prefix):].split("/", 1)[0]
            if slug != tenant.slug:
                raise NotFound("no such resource")
        return TenantContext(
            tenant_id=tenant.id,
            tenant_slug=tenant.slug,
            region=tenant.region,
            principal=principal,
            request_id=request_id,
        )

    async def _resolve(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.peek(tenant_id)
        if tenant is not None:
            return tenant
        try:
            return await anyio.to_thread.run_sync(self._tenants.get, tenant_id)
        except UnknownTenant as exc:
            raise InvalidToken("token names an unknown tenant") from exc

    def _sanitize(self, raw: Iterable[tuple[bytes, bytes]]) -> tuple[Headers, list[bytes]]:
        headers: Headers = []
        authorizations: list[bytes] = []
        for name, value in raw:
            normalized = _normalize(name)
            if b"tenant" in normalized or normalized in self._extra_strip:
                continue
            if normalized in _MEMBER_LISTS:
                value = _without_tenant_members(value)
                if not value:
                    continue
            elif normalized == b"authorization":
                authorizations.append(value)
            headers.append((name, value))
        return headers, authorizations

    def _refused(self, exc: TenancyError, request_id: str) -> None:
        self._events.emit(
            SecurityEvent(
                action="auth.refused",
                at=self._clock.now(),
                reason=getattr(exc, "reason", None) or exc.code,
                request_id=request_id,
                details={"code": exc.code},
            )
        )

    async def _refuse(
        self, exc: TenancyError, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the upgrade with HTTP 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        response = problem_response(
            exc,
            instance=scope["path"],
            realm=self._realm,
            headers={"x-request-id": request_id},
        )
        await response(scope, receive, send)


def _normalize(name: bytes) -> bytes:
    return name.lower().replace(b"_", b"-")


def _bearer_token(authorizations: list[bytes]) -> str:
    if not authorizations:
        raise MissingCredentials("no bearer token")
    if len(authorizations) > 1:
        raise InvalidToken("more than one Authorization header")
    scheme, _, credentials = authorizations[0].strip().partition(b" ")
    if scheme.lower() != b"bearer" or not credentials.strip():
        raise MissingCredentials("Authorization is not a bearer token")
    try:
        return credentials.strip().decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidToken("token is not ASCII") from exc


def _without_tenant_members(value: bytes) -> bytes:
    """Drop list members whose key names a tenant (W3C baggage / tracestate)."""
    members = [m for m in value.split(b",") if b"tenant" not in _normalize(m.split(b"=", 1)[0])]
    return b",".join(members).strip()


def context_of(scope: dict[str, Any]) -> TenantContext | None:
    """The context the middleware stored in the ASGI scope, if any."""
    ctx = scope.get("tenancy")
    return ctx if isinstance(ctx, TenantContext) else None
