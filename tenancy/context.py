"""The tenant context of the current request, held in a ContextVar.

The middleware binds a ``TenantContext`` built from verified credentials only
(invariant 1). It follows the request into ``asyncio`` tasks, ``run_in_threadpool`` /
``asyncio.to_thread``, streaming bodies and background tasks, because all of those copy
the current ``contextvars.Context``. ``loop.run_in_executor`` and threads you start
yourself do not: use :func:`run_in_executor` or :func:`wrap` for those.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import ParamSpec, TypeVar

from tenancy.errors import InsufficientScope, NoTenantContext, TenantContextConflict

P = ParamSpec("P")
T = TypeVar("T")


class PrincipalKind(StrEnum):
    """Who is acting: a person of the tenant, a service, or platform support staff."""

    USER = "user"
    SERVICE = "service"
    SUPPORT = "support"


class Assurance(IntEnum):
    """Authentication assurance, from the token's ``amr`` claim (RFC 8176).

    Ordered, so a policy can ask for ``principal.assurance >= Assurance.MULTI_FACTOR``.
    """

    SINGLE_FACTOR = 1
    MULTI_FACTOR = 2
    PHISHING_RESISTANT = 3

    @property
    def is_mfa(self) -> bool:
        """Whether this level counts as multi-factor (``MULTI_FACTOR`` or stronger)."""
        return self >= Assurance.MULTI_FACTOR


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated actor.

    Identity is issuer + tenant + subject: the same ``sub`` in two tenants (or from two
    issuers) is two different people, so compare ``key``, never ``subject`` alone.
    """

    issuer: str
    tenant_id: str
    subject: str
    kind: PrincipalKind = PrincipalKind.USER
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    assurance: Assurance = Assurance.SINGLE_FACTOR
    device_trusted: bool = False  # the IdP vouches for a managed device (support staff)
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        # Principals key the decision cache on every request; hash the fields once.
        object.__setattr__(
            self,
            "_hash",
            hash(
                (
                    self.issuer,
                    self.tenant_id,
                    self.subject,
                    self.kind.value,
                    self.roles,
                    self.scopes,
                    int(self.assurance),
                    self.device_trusted,
                )
            ),
        )

    def __hash__(self) -> int:
        return self._hash

    @property
    def key(self) -> tuple[str, str, str]:
        """The principal's identity: (issuer, tenant id, subject)."""
        return (self.issuer, self.tenant_id, self.subject)

    @property
    def mfa(self) -> bool:
        """Whether the principal signed in with more than one factor (``assurance.is_mfa``)."""
        return self.assurance.is_mfa


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Everything downstream code may know about who the request is for.

    ``caller`` is the service that forwarded this context in a signed context token
    (``None`` at the edge, where the user's own token was verified);
    ``support_grant_id`` names the support grant a support principal acts under.
    """

    tenant_id: str
    tenant_slug: str
    region: str
    principal: Principal
    request_id: str
    caller: str | None = None
    support_grant_id: str | None = None

    def has_scope(self, scope: str) -> bool:
        """Whether the principal holds ``scope``. To enforce, call ``require_scope``, which
        raises: a forgotten check on this boolean grants access."""
        return scope in self.principal.scopes

    def require_scope(self, scope: str) -> None:
        """Raise :class:`InsufficientScope` unless the principal holds ``scope``."""
        if scope not in self.principal.scopes:
            raise InsufficientScope(scope)


_current: contextvars.ContextVar[TenantContext | None] = contextvars.ContextVar(
    "tenancy_context", default=None
)


def current() -> TenantContext:
    """Return the bound context.

    Raises:
        NoTenantContext: nothing is bound; callers must fail closed, not guess a tenant.
    """
    ctx = _current.get()
    if ctx is None:
        raise NoTenantContext("no tenant context is bound")
    return ctx


def current_or_none() -> TenantContext | None:
    """Return the bound context or ``None``, for code that has a tenant-free path."""
    return _current.get()


def require_scope(scope: str) -> TenantContext:
    """Return the bound context if its principal holds ``scope``.

    Raises:
        NoTenantContext: nothing is bound.
        InsufficientScope: the principal lacks the scope.
    """
    ctx = current()
    ctx.require_scope(scope)
    return ctx


def enter(ctx: TenantContext) -> contextvars.Token[TenantContext | None]:
    """Bind ``ctx`` and return the token that :func:`leave` needs; prefer :class:`bind`.

    Raises:
        TenantContextConflict: a different tenant is already bound here.
    """
    outer = _current.get()
    if outer is not None and outer.tenant_id != ctx.tenant_id:
        raise TenantContextConflict("a different tenant is already bound")
    return _current.set(ctx)


def leave(token: contextvars.Token[TenantContext | None]) -> None:
    """Undo the :func:`enter` that returned ``token``."""
    _current.reset(token)


class bind:
    """Bind ``ctx`` for the duration of the ``with`` block, and always unbind it.

    Binding a different tenant inside an existing binding is refused: code running for
    tenant A must never switch itself to tenant B.

    Raises:
        TenantContextConflict: another tenant is already bound here.
    """

    __slots__ = ("_ctx", "_token")

    def __init__(self, ctx: TenantContext) -> None:
        self._ctx = ctx

    def __enter__(self) -> TenantContext:
        self._token = enter(self._ctx)
        return self._ctx

    def __exit__(self, *exc: object) -> None:
        leave(self._token)


def run_in_context(
    ctx: TenantContext, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run ``fn`` with ``ctx`` bound in a fresh copy of the current context."""

    def _run() -> T:
        with bind(ctx):
            return fn(*args, **kwargs)

    return contextvars.copy_context().run(_run)


def wrap(fn: Callable[P, T]) -> Callable[P, T]:
    """Capture the current context now, and run ``fn`` inside it later.

    Use it for callables handed to threads or executors that do not copy contextvars.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def _wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        # A Context can be entered by one thread at a time; run each call in its own copy.
        return captured.copy().run(fn, *args, **kwargs)

    return _wrapped


async def run_in_executor(
    executor: Executor | None, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Like ``loop.run_in_executor``, but the callable sees the caller's tenant context."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(executor, call)
