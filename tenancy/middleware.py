"""TenancyMiddleware: establish the tenant context at the edge, or refuse.

A pure ASGI middleware (never ``BaseHTTPMiddleware``, which breaks ContextVar
propagation). Per HTTP or WebSocket connection:

1. strip every header that names a tenant (``X-Tenant-ID``, ``x_tenant_id``, ...) and
   tenant entries of ``baggage``/``tracestate`` (:mod:`tenancy.headers`);
2. authenticate the bearer token: a user's access token at the edge (``TokenVerifier``)
   or a signed context token from a trusted service downstream
   (``tenancy.propagation.ContextTokenVerifier``);
3. resolve the tenant from the token's ``tid`` only, and refuse it unless active and
   homed in this service's region; support staff are admitted to the tenant they name
   only under an active grant (:mod:`tenancy.support.admission`);
4. with an ``authorizer``, ask the policy whether this principal may call this route
   (method + route template) and refuse unless it allows: 403 on a deny, 503 when no
   valid decision can be had (engine down, timeout, undefined);
5. bind a ``TenantContext`` for the app call and always unbind it, even on cancellation;
6. in consistency mode (tests, staging), bind a ``tenancy.consistency.LayerCheck`` that
   every layer reports its tenant to, and fail closed if any names another tenant.

Refusals are RFC 9457 problem responses (``tenancy.problems``) and security events.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import anyio.to_thread
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenancy import consistency
from tenancy.authn import Authentication, Authenticator, build_context
from tenancy.authz.authorizer import Authorizer, bind_authorizer, unbind_authorizer
from tenancy.authz.decision import Action, GrantFacts
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import PrincipalKind, TenantContext
from tenancy.context import enter as _bind
from tenancy.context import leave as _unbind
from tenancy.errors import (
    AccessDenied,
    ConfigurationError,
    DecisionUnavailable,
    InvalidToken,
    LayerMismatch,
    NoActiveGrant,
    NotFound,
    TenancyError,
    UnknownTenant,
    WrongRegion,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.faults import ServerFaults, fault_of
from tenancy.headers import InboundHeaders, bearer_token
from tenancy.problems import problem_response
from tenancy.settings import consistency_checks_from_env
from tenancy.support.admission import SUPPORT_TARGET_HEADER, SupportAdmission, under_grant
from tenancy.support.service import SupportAccess
from tenancy.tenants.model import Tenant, validate_region
from tenancy.tenants.registry import TenantRegistry

REQUEST_ID_HEADER = b"x-request-id"
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
            raise ConfigurationError(
                "TenancyMiddleware needs an Authenticator (TokenVerifier or ContextTokenVerifier)"
            )
        if tenant_path_prefix is not None and not (
            tenant_path_prefix.startswith("/") and tenant_path_prefix.endswith("/")
        ):
            raise ConfigurationError("tenant_path_prefix must start and end with '/'")
        if authorizer is not None and not routes:
            raise ConfigurationError("an authorizer needs the app's routes to name them")
        self.app = ServerFaults(app)  # database faults: retried or 503; escapes: 500 problem
        self._verifier = verifier
        self._tenants = tenants
        self._region = validate_region(region)
        self._public = frozenset(public_paths)
        self._path_prefix = tenant_path_prefix
        self._headers = InboundHeaders(strip_headers)
        self._events = events if events is not None else LoggingSink()
        self._clock = clock
        self._realm = realm
        self._startup_audit = startup_audit
        self._authorizer = authorizer
        self._routes = tuple(routes)
        self._static_actions: dict[tuple[str, str], Action] = {}
        self._admission = SupportAdmission(
            support,
            tenants=tenants,
            resolve=self._resolve,
            clock=clock,
            header=support_target_header,
        )
        self._consistency = (
            consistency_checks_from_env() if consistency_checks is None else consistency_checks
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _CONNECTION_TYPES:
            if scope["type"] == "lifespan" and self._startup_audit is not None:
                await _audited_lifespan(self.app, self._startup_audit, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        headers, authorizations = self._headers.sanitize(scope["headers"])
        if headers is not None:
            scope = {**scope, "headers": headers}
        path = scope["path"]
        if path in self._public:
            await self.app(scope, receive, send)
            return

        request_id = f"{_REQUEST_ID_PREFIX}{next(_request_counter)}"
        check = checking = bound = authorizing = None
        try:
            try:
                now = self._clock.timestamp()
                auth, tenant, grant = await self._admit(bearer_token(authorizations), now, scope)
                ctx = self._context(auth, tenant, path, request_id)
                if grant is not None:
                    ctx = under_grant(ctx, grant)
                if self._consistency:
                    check = consistency.check_for(auth, grant)
                    checking = consistency.enter(check)
                    check.observe(consistency.CONTEXT, ctx.tenant_id)
                if self._authorizer is not None:
                    decision = await self._authorizer.decide(
                        ctx,
                        self._action(scope),
                        now=now,
                        tenant_status=tenant.status.value,
                        grant=grant,
                    )
                    decision.enforce()
                if grant is not None:
                    await self._admission.record_use(grant, request_id=request_id, route=path)
            except TenancyError as exc:
                await self._refuse(exc, scope, receive, send, request_id)
                return
            except Exception as exc:  # a fault (the database gone?), never a plain-text 500
                fault = fault_of(exc, scope, request_id)
                await self._refuse(fault, scope, receive, send, request_id)
                return

            scope["tenancy"] = ctx
            app_send = _with_request_id(send, request_id)
            bound = _bind(ctx)
            if self._authorizer is not None:
                authorizing = bind_authorizer(self._authorizer, grant)
            if check is None:
                await self.app(scope, receive, app_send)
            else:
                await consistency.call_checked(
                    self.app,
                    check,
                    scope,
                    receive,
                    app_send,
                    refuse=functools.partial(
                        self._respond,
                        scope=scope,
                        receive=receive,
                        send=send,
                        request_id=request_id,
                    ),
                    report=functools.partial(self._report, request_id=request_id),
                )
        finally:
            if authorizing is not None:
                unbind_authorizer(authorizing)
            if bound is not None:
                _unbind(bound)
            if checking is not None:
                consistency.leave(checking)

    async def _admit(
        self, token: bytes, now: float, scope: Scope
    ) -> tuple[Authentication, Tenant, GrantFacts | None]:
        """Who calls, for which tenant, under which support grant (``None`` for anyone
        but support staff, whose grant is read on every request).

        Each cache is asked once (a token it misses is verified without asking again),
        and with the token and the tenant both cached nothing here suspends.
        """
        auth = self._verifier.cached(token, now=now)
        if auth is None:
            auth = await self._verifier.authenticate(token, now=now)
        if auth.principal.kind is PrincipalKind.SUPPORT:
            target, grant = await self._admission.admit(auth, now=now, headers=scope["headers"])
            return auth, target, grant
        tenant = self._tenants.peek(auth.principal.tenant_id, now=now)
        if tenant is None:
            tenant = await self._resolve(auth.principal.tenant_id)
        return auth, tenant, None

    async def _resolve(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.peek(tenant_id)
        if tenant is not None:
            return tenant
        try:
            return await anyio.to_thread.run_sync(self._tenants.get, tenant_id)
        except UnknownTenant as exc:
            raise InvalidToken("token names an unknown tenant") from exc

    def _context(
        self, auth: Authentication, tenant: Tenant, path: str, request_id: str
    ) -> TenantContext:
        ctx = build_context(auth, tenant, region=self._region, request_id=request_id)
        if self._path_prefix is not None and path.startswith(self._path_prefix):
            slug = path[len(self._path_prefix) :].split("/", 1)[0]
            if slug != tenant.slug:
                raise NotFound("no such resource")
        return ctx

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

    async def _refuse(
        self, exc: TenancyError, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        self._report(exc, request_id)
        await self._respond(exc, scope=scope, receive=receive, send=send, request_id=request_id)

    def _report(self, exc: TenancyError, request_id: str) -> None:
        details = {"code": exc.code}
        tenant_id = None
        if isinstance(exc, WrongRegion):
            tenant_id = exc.tenant_id
            details.update(home_region=exc.home_region or "", region=self._region)
        elif isinstance(exc, LayerMismatch):
            tenant_id = exc.expected_tenant_id
            details.update(
                expected_layer=exc.expected_layer,
                expected_tenant_id=exc.expected_tenant_id,
                layer=exc.layer,
                tenant_id=exc.tenant_id,
            )
        self._events.emit(
            SecurityEvent(
                action=_REFUSAL_ACTIONS.get(type(exc), "auth.refused"),
                at=self._clock.now(),
                tenant_id=tenant_id,
                reason=exc.reason,
                request_id=request_id,
                details=details,
            )
        )

    async def _respond(
        self, exc: TenancyError, *, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the upgrade with HTTP 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        response = problem_response(
            exc, instance=scope["path"], realm=self._realm, headers={"x-request-id": request_id}
        )
        await response(scope, receive, send)


async def _audited_lifespan(
    app: ASGIApp, audit: Callable[[], Sequence[object]], scope: Scope, receive: Receive, send: Send
) -> None:
    """Refuse to start (``lifespan.startup.failed``) while the audit finds problems."""
    startup = await receive()
    findings = await anyio.to_thread.run_sync(audit)
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

    await app(scope, replay, send)


def _with_request_id(send: Send, request_id: str) -> Send:
    rid = request_id.encode()

    async def send_with_request_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
        await send(message)

    return send_with_request_id


# Request ids correlate logs and events; they are not secrets, so a random per-process
# prefix and a counter serve (and cost far less than a uuid4 per request).
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_counter = itertools.count(1)

_REFUSAL_ACTIONS = {
    AccessDenied: "authz.denied",
    DecisionUnavailable: "authz.unavailable",
    NoActiveGrant: "support.refused",
    LayerMismatch: "consistency.violation",
}


def context_of(scope: dict[str, Any]) -> TenantContext | None:
    """The context the middleware stored in the ASGI scope, if any."""
    ctx = scope.get("tenancy")
    return ctx if isinstance(ctx, TenantContext) else None
