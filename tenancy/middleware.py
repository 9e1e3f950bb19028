"""TenancyMiddleware: establish the tenant context at the edge, or refuse.

A pure ASGI middleware (never ``BaseHTTPMiddleware``, which breaks ContextVar
propagation). Per HTTP or WebSocket connection:

1. strip every header that names a tenant (``X-Tenant-ID``, ``x_tenant_id``, ...) and
   tenant entries of ``baggage``/``tracestate``, so the app cannot be tempted by them;
2. authenticate the bearer token: a user's access token at the edge (``TokenVerifier``)
   or a signed context token from a trusted service downstream
   (``tenancy.propagation.ContextTokenVerifier``);
3. resolve the tenant from the token's ``tid`` only, and refuse it unless active and
   homed in this service's region;
4. with an ``authorizer``, ask the policy whether this principal may call this route
   (method + route template) and refuse unless it allows: 403 on a deny, 503 when no
   valid decision can be had (engine down, timeout, undefined);
5. bind a ``TenantContext`` for the app call and always unbind it, even on cancellation;
6. in consistency mode (tests, staging), bind a ``tenancy.consistency.LayerCheck`` that
   every layer reports its tenant to, and fail closed if any names another tenant.

Refusals are RFC 9457 problem responses (``tenancy.problems``) and security events.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenancy import consistency
from tenancy.authn import Authentication, Authenticator, build_context
from tenancy.authz.authorizer import Authorizer, bind_authorizer, unbind_authorizer
from tenancy.authz.decision import Action, GrantFacts
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal, PrincipalKind, TenantContext
from tenancy.context import enter as _bind
from tenancy.context import leave as _unbind
from tenancy.errors import (
    AccessDenied,
    ConfigurationError,
    DecisionUnavailable,
    InvalidToken,
    LayerMismatch,
    MissingCredentials,
    NoActiveGrant,
    NotFound,
    TenancyError,
    UnknownTenant,
    WrongRegion,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.headers import MEMBER_LIST_HEADERS, normalize, without_tenant_members
from tenancy.problems import problem_response
from tenancy.settings import consistency_checks_from_env
from tenancy.support.model import Grant
from tenancy.support.service import SupportAccess
from tenancy.tenants.model import Tenant, validate_region
from tenancy.tenants.registry import TenantRegistry

Headers = list[tuple[bytes, bytes]]

REQUEST_ID_HEADER = b"x-request-id"
# Support staff name the tenant they work on here (it must not mention "tenant": such
# headers are stripped as caller say-so).
SUPPORT_TARGET_HEADER = "x-support-target"
_CONNECTION_TYPES = frozenset({"http", "websocket"})


class TenancyMiddleware:
    """Binds a verified ``TenantContext`` for every non-public request.

    Args:
        app: the ASGI app to protect.
        verifier: verifies bearer tokens: a ``TokenVerifier`` for users' access tokens
            at the edge, a ``ContextTokenVerifier`` for context tokens downstream.
        tenants: resolves the token's ``tid`` to a tenant.
        region: this service instance's region; tenants homed elsewhere are refused.
        public_paths: exact paths served without authentication (health checks). They
            still get the header stripping, and no context is bound for them.
        tenant_path_prefix: if set (e.g. ``"/t/"``), the path segment after it must be
            the caller's own tenant slug; any other slug, known or not, is a 404.
        strip_headers: further header names that name a tenant in your deployment.
        startup_audit: called (in a worker thread) when the server starts; if it returns
            findings, start-up fails and the server does not serve. Use
            ``functools.partial(tenancy.scoping.audit.audit_engine, engine)``.
        authorizer: decides every request by policy (``tenancy.authz.Authorizer``);
            handlers can then ``await tenancy.authz.authorize(action, resource)``.
        routes: the app's routes, so the decision names the route template (the
            middleware runs before the router); a path no route matches is a 404.
        support: the support-access workflow; with it, support staff name a target
            tenant in ``support_target_header`` and are admitted only under an active
            grant (their scopes narrowed to the grant's). Without it they are refused.
        consistency_checks: check per request that the verified token, the context, the
            policy input, the database setting, the key binding and outbound context
            tokens all name the same tenant (``tenancy.consistency``); a difference is a
            500, a ``consistency.violation`` event and a rolled-back transaction. ``None``
            reads ``TENANCY_CONSISTENCY_CHECKS`` (on in tests and staging; default off).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Authenticator,
        tenants: TenantRegistry,
        region: str,
        public_paths: Iterable[str] = ("/healthz",),
        tenant_path_prefix: str | None = None,
        strip_headers: Collection[str] = (),
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        realm: str = "tenancy",
        startup_audit: Callable[[], Sequence[object]] | None = None,
        authorizer: Authorizer | None = None,
        routes: Sequence[BaseRoute] = (),
        support: SupportAccess | None = None,
        support_target_header: str = SUPPORT_TARGET_HEADER,
        consistency_checks: bool | None = None,
    ) -> None:
        if not isinstance(verifier, Authenticator):
            raise ConfigurationError("TenancyMiddleware needs an Authenticator "
                                     "(TokenVerifier or ContextTokenVerifier)")
        if tenant_path_prefix is not None and not (
            tenant_path_prefix.startswith("/") and tenant_path_prefix.endswith("/")
        ):
            raise ConfigurationError("tenant_path_prefix must start and end with '/'")
        if authorizer is not None and not routes:
            raise ConfigurationError("an authorizer needs the app's routes to name them")
        self.app = app
        self._authorizer = authorizer
        self._support = support
        self._support_header = support_target_header.lower().encode("latin-1")
        if b"tenant" in self._support_header:
            raise ConfigurationError("the support target header must not be stripped as a "
                                     "tenant header: choose a name without 'tenant'")
        self._routes = tuple(routes)
        self._static_actions: dict[tuple[str, str], Action] = {}
        self._verifier = verifier
        self._tenants = tenants
        self._region = validate_region(region)
        self._public = frozenset(public_paths)
        self._path_prefix = tenant_path_prefix
        self._extra_strip = frozenset(normalize(h.encode("latin-1")) for h in strip_headers)
        # Header names that need a closer look; everything else passes untouched.
        self._special = self._extra_strip | MEMBER_LIST_HEADERS | {b"authorization"}
        self._events = events if events is not None else LoggingSink()
        self._clock = clock
        self._realm = realm
        self._startup_audit = startup_audit
        self._consistency = (consistency_checks_from_env() if consistency_checks is None
                             else consistency_checks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _CONNECTION_TYPES:
            if scope["type"] == "lifespan" and self._startup_audit is not None:
                await self._audited_lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        headers, authorizations = self._sanitize(scope["headers"])
        if headers is not None:
            scope = {**scope, "headers": headers}
        path = scope["path"]
        if path in self._public:
            await self.app(scope, receive, send)
            return

        request_id = f"{_REQUEST_ID_PREFIX}{next(_request_counter)}"
        check: consistency.LayerCheck | None = None
        try:
            token = _bearer_token(authorizations)
            now = self._clock.timestamp()
            # Hot path: token and tenant both cached, so nothing is awaited.
            admitted = self._admit_cached(token, now)
            grant: GrantFacts | None = None
            if admitted is None:
                auth, tenant, grant = await self._admit(token, now, scope)
                admitted = (auth, tenant)
            ctx = self._context(*admitted, path, request_id)
            if grant is not None:
                ctx = _under_grant(ctx, grant)
            if self._consistency:
                check = _layer_check(admitted[0], grant)
                checking = consistency.enter(check)
                check.observe(consistency.CONTEXT, ctx.tenant_id)
            if self._authorizer is not None:
                # Hot path: a cached decision needs no await.
                action = self._action(scope)
                status = admitted[1].status.value
                decision = self._authorizer.cached(ctx, action, now=now, tenant_status=status,
                                                   grant=grant)
                if decision is None:
                    decision = await self._authorizer.decide(ctx, action, now=now,
                                                             tenant_status=status, grant=grant)
                decision.enforce()
            if grant is not None and self._support is not None:
                await anyio.to_thread.run_sync(self._record_support_use, grant, request_id,
                                               path)
        except BaseException as exc:
            if check is not None:
                consistency.leave(checking)
            if not isinstance(exc, TenancyError):
                raise
            self._refused(exc, request_id)
            await self._refuse(exc, scope, receive, send, request_id)
            return

        scope["tenancy"] = ctx
        rid = request_id.encode()

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
            await send(message)

        bound = _bind(ctx)
        authorizing = (None if self._authorizer is None
                       else bind_authorizer(self._authorizer, grant))
        try:
            if check is None:
                await self.app(scope, receive, send_with_request_id)
            else:
                await self._checked(check, scope, receive, send, send_with_request_id,
                                    request_id)
        finally:
            if authorizing is not None:
                unbind_authorizer(authorizing)
            _unbind(bound)
            if check is not None:
                consistency.leave(checking)

    async def _checked(self, check: consistency.LayerCheck, scope: Scope, receive: Receive,
                       send: Send, app_send: Send, request_id: str) -> None:
        """Call the app under ``check``. Once a layer disagrees, nothing the app sends gets
        out: a response not yet started becomes the 500 problem, one already started is
        aborted (the exception reaches the server), and the violation becomes an event."""
        started = replaced = False

        async def send_checked(message: Message) -> None:
            nonlocal started, replaced
            if check.violation is not None:
                if replaced:
                    return
                if started:
                    raise check.violation  # mid-response: abort it, never finish it
                replaced = True
                await self._refuse(check.violation, scope, receive, send, request_id)
                return
            if message["type"] in ("http.response.start", "websocket.accept"):
                started = True
            await app_send(message)

        try:
            await self.app(scope, receive, send_checked)
        except Exception:
            if check.violation is None or (started and not replaced):
                raise
        finally:
            if check.violation is not None:
                self._refused(check.violation, request_id)
        if check.violation is not None and not started and not replaced:
            await self._refuse(check.violation, scope, receive, send, request_id)

    def _action(self, scope: Scope) -> Action:
        """The route template this request will reach; a 404 if none matches.

        Full matches of routes without parameters are remembered (a bounded set: the
        app's own routes and methods), so the common case is one dict lookup.
        """
        method = scope.get("method", "WEBSOCKET")
        remembered = self._static_actions.get((method, scope["path"]))
        if remembered is not None:
            return remembered
        found: BaseRoute | None = None
        full = False
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                found, full = route, True
                break
            if match is Match.PARTIAL and found is None:
                found = route  # path known, method not allowed: the policy denies it
        template = getattr(found, "path", None)
        if template is None:
            raise NotFound("no such resource")
        action = Action.http(method, template)
        if full and not getattr(found, "param_convertors", True):
            # Only full matches: a client's made-up methods must not grow this dict.
            self._static_actions[(method, scope["path"])] = action
        return action

    async def _audited_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse to start (``lifespan.startup.failed``) while the audit finds problems."""
        assert self._startup_audit is not None
        startup = await receive()
        findings = await anyio.to_thread.run_sync(self._startup_audit)
        if findings:
            message = "tenant isolation audit failed: " + "; ".join(str(f) for f in findings)
            await send({"type": "lifespan.startup.failed", "message": message})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return startup
            return await receive()

        await self.app(scope, replay, send)

    def _admit_cached(self, token: bytes, now: float) -> tuple[Authentication, Tenant] | None:
        verified = self._verifier.cached(token, now=now)
        if verified is None or verified.principal.kind is PrincipalKind.SUPPORT:
            return None  # support staff take the slow path: their grant is read every time
        tenant = self._tenants.peek(verified.principal.tenant_id, now=now)
        return None if tenant is None else (verified, tenant)

    async def _admit(self, token: bytes, now: float,
                     scope: Scope) -> tuple[Authentication, Tenant, GrantFacts | None]:
        verified = await self._verifier.authenticate(token, now=now)
        if verified.principal.kind is not PrincipalKind.SUPPORT:
            return verified, await self._resolve(verified.principal.tenant_id), None
        return await self._admit_support(verified, now, scope)

    async def _admit_support(self, verified: Authentication, now: float,
                             scope: Scope) -> tuple[Authentication, Tenant, GrantFacts | None]:
        """Support staff: the tenant is the one they name (edge) or the one their grant
        was for (a context token downstream), and only an active grant admits them. The
        grant is read on every request, so a revocation holds on the very next one."""
        if self._support is None:
            raise NoActiveGrant("this service does not admit support staff")
        principal = verified.principal
        # The policy checks these too; they hold even where no policy is configured.
        if not principal.mfa:
            raise AccessDenied(("mfa_required",))
        if not principal.device_trusted:
            raise AccessDenied(("untrusted_device",))
        if verified.caller is not None:  # a context token: the tenant and grant are signed
            tenant = await self._resolve(principal.tenant_id)
            found = None
            if verified.support_grant_id is not None:
                found = await anyio.to_thread.run_sync(self._support_grant, tenant.id,
                                                       verified.support_grant_id)
            if found is None or (found.engineer, found.engineer_issuer) != (
                    principal.subject, principal.issuer):
                raise NoActiveGrant("no active grant for this tenant")
        else:
            target = _header(scope, self._support_header)
            if not target:
                raise NoActiveGrant("support staff name the tenant in " +
                                    self._support_header.decode())
            tenant = await self._target(target)
            found = await anyio.to_thread.run_sync(self._active_grant, tenant.id, principal)
            if found is None:
                raise NoActiveGrant("no active grant for this tenant")
        when = datetime.fromtimestamp(now, UTC)
        expires = found.expires_at()
        assert expires is not None
        return verified, tenant, GrantFacts(found.id, found.tenant_id, found.scopes,
                                            expires.timestamp(), found.active_at(when))

    def _support_grant(self, tenant_id: str, grant_id: str) -> Grant | None:
        assert self._support is not None
        try:
            grant = self._support.get(tenant_id, grant_id)
        except NotFound:
            return None
        return grant if grant.active_at(self._clock.now()) else None

    def _active_grant(self, tenant_id: str, principal: Principal) -> Grant | None:
        assert self._support is not None
        return self._support.active_grant(tenant_id, principal)

    def _record_support_use(self, grant: GrantFacts, request_id: str, path: str) -> None:
        assert self._support is not None
        self._support.record_use(self._support.get(grant.tenant_id, grant.id),
                                 request_id=request_id, route=path)

    async def _target(self, value: str) -> Tenant:
        """The tenant a support principal names, by slug or id; unknown is a 404."""
        try:
            return await anyio.to_thread.run_sync(self._tenants.get_by_slug, value)
        except (UnknownTenant, ValueError):
            try:
                return await anyio.to_thread.run_sync(self._tenants.get, value)
            except (UnknownTenant, ValueError) as exc:
                raise NotFound("no such tenant") from exc

    def _context(
        self, auth: Authentication, tenant: Tenant, path: str, request_id: str
    ) -> TenantContext:
        ctx = build_context(auth, tenant, region=self._region, request_id=request_id)
        if self._path_prefix is not None and path.startswith(self._path_prefix):
            slug = path[len(self._path_prefix):].split("/", 1)[0]
            if slug != tenant.slug:
                raise NotFound("no such resource")
        return ctx

    async def _resolve(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.peek(tenant_id)
        if tenant is not None:
            return tenant
        try:
            return await anyio.to_thread.run_sync(self._tenants.get, tenant_id)
        except UnknownTenant as exc:
            raise InvalidToken("token names an unknown tenant") from exc

    def _sanitize(
        self, raw: list[tuple[bytes, bytes]]
    ) -> tuple[Headers | None, list[bytes]]:
        """Return the headers without tenant-naming entries (``None`` if nothing had to
        go, so the hot path copies nothing) and the Authorization values."""
        headers: Headers | None = None
        authorizations: list[bytes] = []
        special = self._special
        for index, (name, value) in enumerate(raw):
            if name == b"authorization":  # the common case, already lowercase (ASGI)
                authorizations.append(value)
            else:
                low = name.lower()
                if low in special or b"tenant" in low or b"_" in low:
                    kept = self._filtered(low, value, authorizations)
                    if kept is not value:
                        if headers is None:
                            headers = list(raw[:index])  # first change: copy the rest so far
                        if kept is not None:
                            headers.append((name, kept))
                        continue
            if headers is not None:
                headers.append((name, value))
        return headers, authorizations

    def _filtered(self, low: bytes, value: bytes, authorizations: list[bytes]) -> bytes | None:
        """The value to keep for a header that needs a closer look, or ``None`` to drop it."""
        normalized = low.replace(b"_", b"-")
        if b"tenant" in normalized or normalized in self._extra_strip:
            return None
        if normalized in MEMBER_LIST_HEADERS:
            return without_tenant_members(value) or None
        if normalized == b"authorization":
            authorizations.append(value)
        return value

    def _refused(self, exc: TenancyError, request_id: str) -> None:
        details = {"code": exc.code}
        tenant_id = None
        if isinstance(exc, WrongRegion):
            tenant_id = exc.tenant_id
            details.update(home_region=exc.home_region or "", region=self._region)
        elif isinstance(exc, LayerMismatch):
            tenant_id = exc.expected_tenant_id
            details.update(expected_layer=exc.expected_layer,
                           expected_tenant_id=exc.expected_tenant_id, layer=exc.layer,
                           tenant_id=exc.tenant_id)
        self._events.emit(
            SecurityEvent(
                action=_REFUSAL_ACTIONS.get(type(exc), "auth.refused"),
                at=self._clock.now(),
                tenant_id=tenant_id,
                reason=getattr(exc, "reason", None) or exc.code,
                request_id=request_id,
                details=details,
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


def _bearer_token(authorizations: list[bytes]) -> bytes:
    if not authorizations:
        raise MissingCredentials("no bearer token")
    if len(authorizations) > 1:
        raise InvalidToken("more than one Authorization header")
    value = authorizations[0]
    if value[:7].lower() != b"bearer ":
        raise MissingCredentials("Authorization is not a bearer token")
    token = value[7:].strip()
    if not token:
        raise MissingCredentials("Authorization is not a bearer token")
    return token


# Request ids correlate logs and events; they are not secrets, so a random per-process
# prefix and a counter serve (and cost far less than a uuid4 per request).
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_counter = itertools.count(1)


_REFUSAL_ACTIONS = {AccessDenied: "authz.denied", DecisionUnavailable: "authz.unavailable",
                    NoActiveGrant: "support.refused", LayerMismatch: "consistency.violation"}


def _layer_check(auth: Authentication, grant: GrantFacts | None) -> consistency.LayerCheck:
    """A check seeded with the tenant the verified credentials name: the token's, or for
    support staff (whose token names the staff tenant) the tenant of their active grant,
    which downstream must also be the context token's ``tid``."""
    if grant is None:
        return consistency.LayerCheck(auth.principal.tenant_id)
    check = consistency.LayerCheck(grant.tenant_id)
    if auth.caller is not None:  # a context token: its tid is the grant's tenant
        check.observe(consistency.TOKEN, auth.principal.tenant_id)
    return check
def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1")).strip()
    return None


def _under_grant(ctx: TenantContext, grant: GrantFacts) -> TenantContext:
    """The context of a support principal under ``grant``: it names the grant, and the
    principal holds only the scopes both its token and the grant allow."""
    principal = replace(ctx.principal, scopes=ctx.principal.scopes & grant.scopes)
    return replace(ctx, principal=principal, support_grant_id=grant.id)


def context_of(scope: dict[str, Any]) -> TenantContext | None:
    """The context the middleware stored in the ASGI scope, if any."""
    ctx = scope.get("tenancy")
    return ctx if isinstance(ctx, TenantContext) else None
