"""A deliberately broken middleware that trusts an ``X-Tenant-ID`` header (a test fixture).

``TrustingMiddleware`` authenticates exactly like ``TenancyMiddleware``, then, when the raw
request names a known tenant (by id or slug) in ``X-Tenant-ID``, builds the context for
THAT tenant instead of the verified token's: the classic "tenant from a client header" bug
(invariant 1 broken). It exists so that isolation checks can prove they catch it: with
consistency checks on it is refused (``tenant-layer-mismatch``); with them off it leaks.
Never use it outside tests.
"""

from __future__ import annotations

import contextvars

from starlette.types import Receive, Scope, Send

from tenancy.authn import Authentication
from tenancy.context import TenantContext
from tenancy.errors import NotFound
from tenancy.middleware import TenancyMiddleware
from tenancy.tenants.model import Tenant

TRUSTED_HEADER = b"x-tenant-id"

# The tenant the raw header named, for this request only (no per-request state on self).
_claimed: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar(
    "trusting_middleware_claimed", default=None
)


class TrustingMiddleware(TenancyMiddleware):
    """``TenancyMiddleware`` that lets ``X-Tenant-ID`` (any case, id or slug) pick the
    tenant of the context. Unknown values are ignored (the token's tenant is used)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        claimed = None
        if scope["type"] in ("http", "websocket"):
            # The real middleware strips tenant headers first: read them before.
            value = next((v for k, v in scope["headers"] if k.lower() == TRUSTED_HEADER), None)
            if value is not None:
                claimed = await self._claimed_tenant(value.decode("latin-1").strip())
        token = _claimed.set(claimed)
        try:
            await super().__call__(scope, receive, send)
        finally:
            _claimed.reset(token)

    async def _claimed_tenant(self, value: str) -> Tenant | None:
        if not value:
            return None
        try:
            return await self._admission.target(value)  # by slug, then by id
        except NotFound:
            return None

    def _context(
        self, auth: Authentication, tenant: Tenant, path: str, request_id: str
    ) -> TenantContext:
        claimed = _claimed.get()
        return super()._context(auth, tenant if claimed is None else claimed, path, request_id)
