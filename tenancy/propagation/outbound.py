"""Outbound calls carry the current tenant context as a fresh, single-use context token.

Use :class:`ContextAuth` as ``auth=`` on an ``httpx.Client`` or ``httpx.AsyncClient``
(or per request). Each request gets its own token for ``audience`` with only ``scopes``;
without a bound context the request is refused before anything is sent. Headers that
name a tenant and tenant members of ``baggage``/``tracestate`` are removed from the
request, so no downstream service can be tempted by them. :func:`context_headers` does
the same for any other client (aiohttp, gRPC metadata, ...).
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable

import httpx

from tenancy.errors import ConfigurationError
from tenancy.headers import scrub
from tenancy.propagation.tokens import ContextTokenMinter


def context_headers(
    minter: ContextTokenMinter,
    *,
    audience: str,
    scopes: Collection[str],
    headers: Iterable[tuple[str, str]] = (),
    strip_headers: Collection[str] = (),
) -> list[tuple[str, str]]:
    """``headers`` without tenant-naming entries, plus ``Authorization`` with a fresh
    context token for ``audience``: for clients other than httpx.

    Raises:
        NoTenantContext: no tenant context is bound.
        InsufficientScope: the caller lacks one of ``scopes``.
    """
    token = minter.mint(audience=audience, scopes=scopes)
    extra = frozenset(h.lower().replace("_", "-").encode() for h in strip_headers)
    raw = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in headers
        if k.lower() != "authorization"
    ]
    kept = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scrub(raw, extra)]
    return [*kept, ("Authorization", f"Bearer {token}")]


class ContextAuth(httpx.Auth):
    """httpx authentication that forwards the bound tenant context.

    Args:
        minter: this service's :class:`ContextTokenMinter`.
        audience: the service the requests go to.
        scopes: the scopes these requests need; each must be held by the caller, or
            the request is refused with ``InsufficientScope``.
        strip_tenant_headers: remove tenant-naming headers and baggage members
            (default; turn off only for a service that is not multi-tenant).
        strip_headers: further header names that name a tenant in your deployment.

    Raises (when a request is sent):
        NoTenantContext: no tenant context is bound; nothing is sent.
        InsufficientScope: the caller lacks one of ``scopes``; nothing is sent.
    """

    def __init__(
        self,
        minter: ContextTokenMinter,
        *,
        audience: str,
        scopes: Collection[str],
        strip_tenant_headers: bool = True,
        strip_headers: Collection[str] = (),
    ) -> None:
        if not isinstance(minter, ContextTokenMinter):
            raise ConfigurationError("ContextAuth needs a ContextTokenMinter")
        if not audience or isinstance(scopes, str):
            raise ConfigurationError("ContextAuth needs an audience and a collection of scopes")
        self._minter = minter
        self._audience = audience
        self._scopes = frozenset(scopes)
        self._strip = strip_tenant_headers
        self._extra = frozenset(h.lower().replace("_", "-").encode() for h in strip_headers)

    def with_scopes(self, *scopes: str) -> ContextAuth:
        """The same auth for another set of scopes (one per kind of call)."""
        auth = ContextAuth(
            self._minter, audience=self._audience, scopes=scopes, strip_tenant_headers=self._strip
        )
        auth._extra = self._extra
        return auth

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx's hook, run per request in the caller's task or thread: mint a fresh
        context token from the context bound there, remove tenant-naming headers (unless
        ``strip_tenant_headers`` is off, which skips ``strip_headers`` too) and set
        ``Authorization``.

        Raises:
            NoTenantContext: no tenant context is bound; nothing is sent.
            InsufficientScope: the caller lacks one of the scopes; nothing is sent.
        """
        # Runs in the caller's task or thread, so the caller's context is the one bound.
        token = self._minter.mint(audience=self._audience, scopes=self._scopes)
        if self._strip:
            request.headers = httpx.Headers(scrub(request.headers.raw, self._extra))
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def __repr__(self) -> str:
        return f"ContextAuth(audience={self._audience!r}, scopes={sorted(self._scopes)})"
