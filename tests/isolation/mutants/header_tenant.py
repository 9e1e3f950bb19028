"""The trusting middleware taken all the way (a test fixture): ``X-Tenant-ID`` picks the
tenant of the context AND of the principal, as a service that "just reads the tenant
header" would. ``TrustingMiddleware`` alone leaves the principal in the token's tenant,
which the policy refuses; this one is consistent with itself, so only checks of the
layers against the verified token (the probe, consistency checks) can catch it."""

from __future__ import annotations

from dataclasses import replace

from tenancy.authn import Authentication
from tenancy.context import TenantContext
from tenancy.tenants.model import Tenant
from tests.isolation.mutants.trusting_middleware import TrustingMiddleware


class HeaderTenantMiddleware(TrustingMiddleware):
    def _context(
        self, auth: Authentication, tenant: Tenant, path: str, request_id: str
    ) -> TenantContext:
        ctx = super()._context(auth, tenant, path, request_id)
        if ctx.tenant_id == auth.principal.tenant_id:
            return ctx
        return replace(ctx, principal=replace(ctx.principal, tenant_id=ctx.tenant_id))
