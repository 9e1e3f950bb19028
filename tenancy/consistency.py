"""Cross-layer consistency: every layer of one request must name the same tenant.

In consistency mode (tests and staging; ``TENANCY_CONSISTENCY_CHECKS=1`` or
``TenancyMiddleware(consistency_checks=True)``) the middleware binds a :class:`LayerCheck`
per request, seeded with the tenant of the verified credentials (layer ``"token"``). Each
layer then reports the tenant it acts for with :func:`observe`:

=============== ===============================================================
``context``     the bound ``TenantContext`` (middleware)
``policy``      the tenant (and principal tenant) of the policy input (``Authorizer``)
``db``          the ``tenancy.tenant_id`` setting read back from PostgreSQL, or on other
                databases the tenant the ORM criteria scope statements to
``keys``        the ``Binding`` (associated data) of ``TenantKeys.encrypt``/``decrypt``
``propagation`` the ``tid`` an outbound context token is minted with
=============== ===============================================================

A different tenant raises :class:`~tenancy.errors.LayerMismatch` and marks the request
violated: every later observation in it raises too, so it fails closed, and the middleware
answers 500 and emits a ``consistency.violation`` event. With no check bound (the mode
off), :func:`observe` costs one ContextVar lookup. :func:`suspended` (used by
``system_scope``) lifts the check for deliberately tenant-less work.

The middleware's part lives here too, so the rules sit in one place: :func:`check_for`
seeds a request's check from its verified credentials, and :func:`call_checked` runs the
app so that nothing it sends after a violation reaches the client.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tenancy.errors import ConfigurationError, LayerMismatch

if TYPE_CHECKING:  # annotations only: every layer imports this module
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from tenancy.authn import Authentication
    from tenancy.authz.decision import GrantFacts

TOKEN = "token"  # noqa: S105 -- a layer name, not a secret
CONTEXT = "context"
POLICY = "policy"
DB = "db"
KEYS = "keys"
PROPAGATION = "propagation"

_check: contextvars.ContextVar[LayerCheck | None] = contextvars.ContextVar(
    "tenancy_layer_check", default=None
)


class LayerCheck:
    """The tenant one request is for, and which layers have confirmed it.

    Shared by the request's tasks and threads (they copy the ContextVar, not the object),
    so it only ever grows a set and sets one field once.
    """

    __slots__ = ("_seen", "expected_layer", "tenant_id", "violation")

    def __init__(self, tenant_id: str, *, layer: str = TOKEN) -> None:
        if not tenant_id:
            raise ConfigurationError("a LayerCheck needs the verified tenant id")
        self.tenant_id = tenant_id
        self.expected_layer = layer
        self._seen: set[str] = {layer}
        self.violation: LayerMismatch | None = None

    @property
    def layers(self) -> frozenset[str]:
        """Every layer that named the request's tenant (coverage for tests and staging)."""
        return frozenset(self._seen)

    def observe(self, layer: str, tenant_id: str) -> None:
        """Record that ``layer`` acts for ``tenant_id``.

        Raises:
            LayerMismatch: ``tenant_id`` is another tenant, or an earlier layer of this
                request already disagreed (the request stays failed).
        """
        if self.violation is not None:
            raise self.violation
        if tenant_id != self.tenant_id:
            self.violation = LayerMismatch(
                expected_layer=self.expected_layer,
                expected_tenant_id=self.tenant_id,
                layer=layer,
                tenant_id=tenant_id,
            )
            raise self.violation
        self._seen.add(layer)

    def __repr__(self) -> str:
        state = "violated" if self.violation is not None else "ok"
        return f"LayerCheck({self.tenant_id!r}, layers={sorted(self._seen)}, {state})"


def observe(layer: str, tenant_id: str) -> None:
    """Report the tenant ``layer`` acts for; a no-op unless a check is bound.

    Raises:
        LayerMismatch: a check is bound and names another tenant (see :class:`LayerCheck`).
    """
    check = _check.get()
    if check is not None:
        check.observe(layer, tenant_id)


def active() -> LayerCheck | None:
    """The check bound to this request, if consistency mode is on (one ContextVar lookup)."""
    return _check.get()


def enter(check: LayerCheck) -> contextvars.Token[LayerCheck | None]:
    """Bind ``check`` for this request; :func:`leave` with the token undoes it."""
    return _check.set(check)


def leave(token: contextvars.Token[LayerCheck | None]) -> None:
    """Unbind the check that :func:`enter` bound (``token`` is what it returned); call it in
    ``finally`` so no later work in this context is checked against another request's
    tenant."""
    _check.reset(token)


@contextmanager
def suspended() -> Iterator[None]:
    """Lift the check for the block: deliberately tenant-less (system-scope) work."""
    token = _check.set(None)
    try:
        yield
    finally:
        _check.reset(token)


def check_for(auth: Authentication, grant: GrantFacts | None) -> LayerCheck:
    """A request's check, seeded with the tenant its verified credentials name: the
    token's, or for support staff (whose token names the staff tenant) the tenant of
    their active grant, which downstream must also be the context token's ``tid``."""
    if grant is None:
        return LayerCheck(auth.principal.tenant_id)
    check = LayerCheck(grant.tenant_id)
    if auth.caller is not None:  # a context token: its tid is the grant's tenant
        check.observe(TOKEN, auth.principal.tenant_id)
    return check


async def call_checked(
    app: ASGIApp,
    check: LayerCheck,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    refuse: Callable[[LayerMismatch], Awaitable[None]],
    report: Callable[[LayerMismatch], None],
) -> None:
    """Call ``app`` under ``check``. Once a layer disagrees, nothing the app sends gets
    out: a response not yet started becomes ``refuse(violation)`` (the 500 problem), one
    already started is aborted (the exception reaches the server, never a finished body).
    Either way the violation is passed to ``report`` once the app is done.
    """
    started = replaced = False

    async def send_checked(message: Message) -> None:
        nonlocal started, replaced
        if check.violation is not None:
            if replaced:
                return
            if started:
                raise check.violation  # mid-response: abort it, never finish it
            replaced = True
            await refuse(check.violation)
            return
        if message["type"] in ("http.response.start", "websocket.accept"):
            started = True
        await send(message)

    try:
        await app(scope, receive, send_checked)
    except Exception:
        if check.violation is None or (started and not replaced):
            raise
    finally:
        if check.violation is not None:
            report(check.violation)
    if check.violation is not None and not started and not replaced:
        await refuse(check.violation)
