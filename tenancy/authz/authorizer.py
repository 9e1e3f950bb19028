"""Enforcing decisions: cache, engine off the event loop with a deadline, decision log.

The middleware asks for every request (method + route template); handlers ask for finer
actions with ``await authorize(action, resource)``. Anything but a valid allow is a
refusal: a deny raises ``AccessDenied`` (403), and an engine that errs, times out,
answers undefined or malformed (or, for a custom engine, answers anything but a
``Decision``) raises ``DecisionUnavailable`` (503). Input some engine could not read
exactly (:mod:`tenancy.authz.representable`) is refused before any engine is asked.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Hashable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.to_thread

from tenancy import consistency
from tenancy.authz.bundle import PolicyBundle
from tenancy.authz.cache import DecisionCache
from tenancy.authz.decision import Action, Decision, GrantFacts, Resource, build_input
from tenancy.authz.log import DecisionLogSink, DecisionRecord, new_decision_id
from tenancy.authz.pdp import PolicyDecisionPoint
from tenancy.authz.representable import check_representable
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import PrincipalKind, TenantContext, current
from tenancy.errors import ConfigurationError, DecisionUnavailable

if TYPE_CHECKING:
    from tenancy.authz.roles import RoleBindingsRefresher

ACTIVE = "active"
# The default of ``Authorizer(cache=...)``: a DecisionCache of that authorizer's own (a
# shared default instance would mix services' decisions and bundle revisions).
_OWN_CACHE: Any = object()


@runtime_checkable
class RepeatingDecisionLog(DecisionLogSink, Protocol):
    """A decision log that takes cache hits as repeats of a logged decision (counted,
    written once per cycle, like ``JsonLinesDecisionLog``) instead of one record each."""

    def repeat(self, decision: Decision, at: float, service: str) -> None:
        """Count a cache hit of ``decision`` (already logged under its ``decision_id``)
        at ``at``; like ``record``, it must return at once and never raise."""


class Authorizer:
    """Decisions for one service (``service`` is its name in the policy's route data).

    Args:
        pdp: the decision point (``EmbeddedRego``, ``OPAServer``, ...).
        service: this service's name, as in ``data.tenancy.routes``.
        bundle: the policy bundle whose changes must empty the cache at once.
        cache: the decision cache (default: a new one for this authorizer); ``None``
            turns caching off, only to measure the engine.
        log: where every enforced decision goes (default: nowhere). A
            :class:`RepeatingDecisionLog` receives cache hits as repeats.
        timeout: seconds an engine may take before the decision is unavailable.
        role_bindings: role bindings kept in the database (:mod:`tenancy.authz.roles`):
            before the cache is probed for a tenant, its bindings must be current (one
            generation lookup); a tenant changed by any process is reloaded into the
            bundle (default ``bundle``: the refresher's) before anything is decided or
            served for it, and a failed reload is ``DecisionUnavailable``. Closed with
            the authorizer.

    Raises:
        ConfigurationError: no decision point or service name, a timeout out of range,
            a ``cache`` that is neither a ``DecisionCache`` nor ``None``, or
            ``role_bindings`` applied to another bundle than ``bundle``.
    """

    def __init__(
        self,
        pdp: PolicyDecisionPoint,
        *,
        service: str,
        bundle: PolicyBundle | None = None,
        cache: DecisionCache | None = _OWN_CACHE,
        log: DecisionLogSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 2.0,
        role_bindings: RoleBindingsRefresher | None = None,
    ) -> None:
        if not isinstance(pdp, PolicyDecisionPoint):
            raise ConfigurationError("Authorizer needs a PolicyDecisionPoint")
        if not service:
            raise ConfigurationError("Authorizer needs this service's name")
        if not 0 < timeout <= 30:
            raise ConfigurationError("timeout must be between 0 and 30 seconds")
        if cache is _OWN_CACHE:
            cache = DecisionCache()
        elif cache is not None and not isinstance(cache, DecisionCache):
            raise ConfigurationError("cache must be a DecisionCache, or None for no cache")
        if role_bindings is not None:
            if bundle is None:
                bundle = role_bindings.bundle  # its changes must empty the cache
            elif bundle is not role_bindings.bundle:
                raise ConfigurationError("role_bindings must apply to this authorizer's bundle")
        self.pdp = pdp
        self.service = service
        self._cache = cache
        self._log = log
        self._repeating = log if isinstance(log, RepeatingDecisionLog) else None
        self._clock = clock
        self._timeout = timeout
        self._bindings = role_bindings
        if bundle is not None and self._cache is not None:
            cache_ = self._cache
            bundle.subscribe(lambda b: cache_.invalidate(b.revision))

    def _key(
        self,
        ctx: TenantContext,
        action: Action,
        resource: Resource | None,
        tenant_status: str,
        grant: GrantFacts | None = None,
    ) -> Hashable:
        # Everything the input holds except the time (see tenancy.authz.cache).
        return (
            self.pdp.revision,
            ctx.tenant_id,
            ctx.region,
            tenant_status,
            ctx.principal,
            ctx.caller,
            ctx.support_grant_id,
            action,
            resource,
            grant,
        )

    def cached(
        self,
        ctx: TenantContext,
        action: Action,
        *,
        now: float,
        tenant_status: str = ACTIVE,
        resource: Resource | None = None,
        grant: GrantFacts | None = None,
    ) -> Decision | None:
        """The cached decision, if any; no I/O. A hit is logged like any decision. None
        while the tenant's role bindings are not current (``decide`` reloads them).

        Raises:
            LayerMismatch: consistency mode, and the input would name another tenant.
        """
        _observe_input(ctx)  # decide() comes through here too, before any engine call
        if self._cache is None:
            return None
        if self._bindings is not None and not self._bindings.current(ctx.tenant_id):
            return None  # changed by some process since loaded: never serve what was cached
        hit = self._cache.get(self._key(ctx, action, resource, tenant_status, grant), now)
        if hit is not None and self._log is not None:
            if self._repeating is not None:
                self._repeating.repeat(hit, now, self.service)  # the cheap path for hot caches
            else:
                self._record(
                    ctx,
                    action,
                    resource,
                    tenant_status,
                    now,
                    hit,
                    cached=True,
                    started=None,
                    grant=grant,
                )
        return hit

    async def decide(
        self,
        ctx: TenantContext,
        action: Action,
        *,
        now: float | None = None,
        tenant_status: str = ACTIVE,
        resource: Resource | None = None,
        grant: GrantFacts | None = None,
    ) -> Decision:
        """The decision for ``ctx`` doing ``action``, from the cache or the engine.

        Raises:
            DecisionUnavailable: the input holds a value some engine cannot read exactly,
                the engine failed, timed out or gave no valid decision, or the tenant's
                role bindings could not be reloaded.
        """
        now = self._clock.timestamp() if now is None else now
        hit = self.cached(
            ctx, action, now=now, tenant_status=tenant_status, resource=resource, grant=grant
        )
        if hit is not None:
            return hit
        if self._bindings is not None and not self._bindings.current(ctx.tenant_id):
            await self._refresh(self._bindings, ctx.tenant_id)
        key = self._key(ctx, action, resource, tenant_status, grant)
        document = build_input(
            ctx,
            service=self.service,
            action=action,
            now=now,
            tenant_status=tenant_status,
            resource=resource,
            grant=grant,
        )
        check_representable(document)  # before any engine, custom ones included
        started = time.perf_counter()
        answer: object = None
        try:
            with anyio.move_on_after(self._timeout) as deadline:
                answer = await anyio.to_thread.run_sync(
                    self.pdp.decide, document, abandon_on_cancel=True
                )
        except DecisionUnavailable:
            raise
        except Exception as exc:  # an engine bug is no decision, never an allow
            raise DecisionUnavailable(f"{self.pdp.name} failed: {type(exc).__name__}") from exc
        if deadline.cancelled_caught:
            raise DecisionUnavailable(f"{self.pdp.name} did not decide within {self._timeout} s")
        decision = replace(_checked(answer, self.pdp.name), decision_id=new_decision_id())
        if self._cache is not None:
            self._cache.put(key, decision, now)
        if self._log is not None:
            self._record(
                ctx,
                action,
                resource,
                tenant_status,
                now,
                decision,
                cached=False,
                started=started,
                grant=grant,
            )
        return decision

    async def authorize(
        self,
        ctx: TenantContext,
        action: Action,
        *,
        resource: Resource | None = None,
        tenant_status: str = ACTIVE,
        grant: GrantFacts | None = None,
    ) -> Decision:
        """Like :meth:`decide`, then enforce.

        Raises:
            AccessDenied: the policy said no.
            DecisionUnavailable: no valid decision could be had.
        """
        decision = await self.decide(
            ctx, action, resource=resource, tenant_status=tenant_status, grant=grant
        )
        return decision.enforce()

    def close(self) -> None:
        """Flush and close the decision log, and close ``role_bindings`` (at shutdown)."""
        close = getattr(self._log, "close", None)
        if callable(close):
            close()
        if self._bindings is not None:
            self._bindings.close()

    async def _refresh(self, bindings: RoleBindingsRefresher, tenant_id: str) -> None:
        """Reload the tenant's role bindings off the event loop, within the deadline."""
        try:
            with anyio.move_on_after(self._timeout) as deadline:
                await anyio.to_thread.run_sync(bindings.refresh, tenant_id, abandon_on_cancel=True)
        except DecisionUnavailable:
            raise
        except Exception as exc:  # a bug in a refresher is no decision either
            raise DecisionUnavailable(f"role bindings failed: {type(exc).__name__}") from exc
        if deadline.cancelled_caught:
            raise DecisionUnavailable(f"role bindings not loaded within {self._timeout} s")

    def _record(
        self,
        ctx: TenantContext,
        action: Action,
        resource: Resource | None,
        tenant_status: str,
        now: float,
        decision: Decision,
        *,
        cached: bool,
        started: float | None,
        grant: GrantFacts | None = None,
    ) -> None:
        assert self._log is not None
        latency = 0.0 if started is None else (time.perf_counter() - started) * 1e6
        service = self.service
        self._log.record(
            DecisionRecord(
                at=now,
                service=service,
                decision=decision,
                cached=cached,
                latency_us=latency,
                input=lambda: build_input(
                    ctx,
                    service=service,
                    action=action,
                    now=now,
                    tenant_status=tenant_status,
                    resource=resource,
                    grant=grant,
                ),
            )
        )


def _checked(answer: object, engine: str) -> Decision:
    """``answer`` if it is a well-formed :class:`Decision`: a custom engine returning a
    dict, a bool or ``None``, or a Decision whose ``allow`` is not a bool, is no decision.

    Raises:
        DecisionUnavailable: anything else.
    """
    if not isinstance(answer, Decision):
        raise DecisionUnavailable(f"{engine} answered {type(answer).__name__}, not a Decision")
    if not isinstance(answer.allow, bool):
        raise DecisionUnavailable(f"{engine} answered a Decision without a boolean allow")
    if answer.allow and answer.reasons:
        raise DecisionUnavailable(f"{engine} answered an allow with reasons to deny")
    return answer


def _observe_input(ctx: TenantContext) -> None:
    """Consistency mode: the tenant the policy input names (``tenant.id``), and the
    principal's tenant, which is the same except for support staff (the staff tenant)."""
    if consistency.active() is not None:
        consistency.observe(consistency.POLICY, ctx.tenant_id)
        if ctx.principal.kind is not PrincipalKind.SUPPORT:
            consistency.observe(consistency.POLICY, ctx.principal.tenant_id)


_Bound = tuple[Authorizer, GrantFacts | None]
_authorizer: contextvars.ContextVar[_Bound | None] = contextvars.ContextVar(
    "tenancy_authorizer", default=None
)


def bind_authorizer(
    authorizer: Authorizer, grant: GrantFacts | None = None
) -> contextvars.Token[_Bound | None]:
    """Make ``authorizer`` (and the request's support grant) what :func:`authorize` uses
    in this context (the middleware does this per request)."""
    return _authorizer.set((authorizer, grant))


def unbind_authorizer(token: contextvars.Token[_Bound | None]) -> None:
    """Undo the :func:`bind_authorizer` that returned ``token``; call it in ``finally``,
    so no later request in this context authorizes with a stale authorizer or grant."""
    _authorizer.reset(token)


async def authorize(action: str | Action, resource: Resource | None = None) -> Decision:
    """A finer decision inside a request: may the current principal do ``action`` (a
    named action from ``data.tenancy.actions``) to ``resource``?

    Raises:
        NoTenantContext: no request context is bound.
        AccessDenied: the policy said no.
        DecisionUnavailable: no authorizer is bound, or no valid decision could be had.
    """
    ctx = current()
    bound = _authorizer.get()
    if bound is None:
        raise DecisionUnavailable("no authorizer is bound to this request")
    authorizer, grant = bound
    named = Action.named(action) if isinstance(action, str) else action
    return await authorizer.authorize(ctx, named, resource=resource, grant=grant)
