"""Support admission: which tenant a support engineer's request is for, and under which grant.

Support staff are principals of the staff tenant, never of a customer's. The middleware
hands every support principal to :class:`SupportAdmission`, which admits one only under
an active, consented grant (invariants 1 and 4):

* at the edge the engineer names the target tenant in a header (``x-support-target``: a
  name without "tenant", because such headers are stripped as a caller's say-so);
  downstream the signed context token names the tenant and the grant, and the grant must
  still be that engineer's;
* MFA and a trusted device are required here as well as in the policy, so they hold
  where no policy is configured;
* the grant is read on every request, never cached, so a revocation holds on the very
  next request;
* every request served under a grant goes to the grant's trail (:meth:`record_use`).

It is a module of its own because these are the support workflow's rules, with their
own storage reads; the middleware only needs the answer: a tenant and a ``GrantFacts``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import anyio.to_thread

from tenancy.authn import Authentication
from tenancy.authz.decision import GrantFacts
from tenancy.clock import Clock
from tenancy.context import Principal, TenantContext
from tenancy.errors import (
    AccessDenied,
    ConfigurationError,
    NoActiveGrant,
    NotFound,
    UnknownTenant,
)
from tenancy.headers import RawHeaders, header_value
from tenancy.support.model import Grant
from tenancy.support.service import SupportAccess
from tenancy.tenants.model import Tenant
from tenancy.tenants.registry import TenantRegistry

SUPPORT_TARGET_HEADER = "x-support-target"


class SupportAdmission:
    """Admits support principals under an active grant, or refuses them.

    Args:
        support: the support-access workflow; ``None`` refuses every support principal.
        tenants: where the tenant an engineer names is looked up (by slug, then by id).
        resolve: the tenant a verified credential's ``tid`` names (the middleware's own
            lookup, so a support context token's tenant resolves like any other).
        clock: decides whether a grant a context token names is still active.
        header: where staff name the target tenant at the edge.

    Raises:
        ConfigurationError: ``header`` contains "tenant" (it would be stripped).
    """

    def __init__(
        self,
        support: SupportAccess | None,
        *,
        tenants: TenantRegistry,
        resolve: Callable[[str], Awaitable[Tenant]],
        clock: Clock,
        header: str = SUPPORT_TARGET_HEADER,
    ) -> None:
        self._header = header.lower().encode("latin-1")
        if b"tenant" in self._header:
            raise ConfigurationError(
                "the support target header must not be stripped as a "
                "tenant header: choose a name without 'tenant'"
            )
        self._support = support
        self._tenants = tenants
        self._resolve = resolve
        self._clock = clock

    async def admit(
        self, verified: Authentication, *, now: float, headers: RawHeaders
    ) -> tuple[Tenant, GrantFacts]:
        """The tenant a support principal works on, and the grant that allows it.

        Raises:
            NoActiveGrant: this service admits no support staff, no target was named, or
                the engineer holds no active grant for the tenant.
            AccessDenied: no MFA, or not from a trusted device.
            NotFound: the named tenant does not exist.
            InvalidToken: a context token names an unknown tenant.
        """
        support = self._support
        if support is None:
            raise NoActiveGrant("this service does not admit support staff")
        principal = verified.principal
        if not principal.mfa:
            raise AccessDenied(("mfa_required",))
        if not principal.device_trusted:
            raise AccessDenied(("untrusted_device",))
        found: Grant | None = None
        if verified.caller is not None:  # a context token: the tenant and grant are signed
            tenant = await self._resolve(principal.tenant_id)
            if verified.support_grant_id is not None:
                found = await anyio.to_thread.run_sync(
                    self._signed_grant, support, tenant.id, verified.support_grant_id, principal
                )
        else:
            target = header_value(headers, self._header)
            if not target:
                raise NoActiveGrant("support staff name the tenant in " + self._header.decode())
            tenant = await self.target(target)
            found = await anyio.to_thread.run_sync(support.active_grant, tenant.id, principal)
        if found is None:
            raise NoActiveGrant("no active grant for this tenant")
        expires = found.expires_at()
        if expires is None:  # only a decided grant ends; an undecided one admits nobody
            raise NoActiveGrant("no active grant for this tenant")
        return tenant, GrantFacts(
            found.id,
            found.tenant_id,
            found.scopes,
            expires.timestamp(),
            found.active_at(datetime.fromtimestamp(now, UTC)),
        )

    async def target(self, value: str) -> Tenant:
        """The tenant a support principal names, by slug or id.

        Raises:
            NotFound: no such tenant.
        """
        try:
            return await anyio.to_thread.run_sync(self._tenants.get_by_slug, value)
        except (UnknownTenant, ValueError):
            try:
                return await anyio.to_thread.run_sync(self._tenants.get, value)
            except (UnknownTenant, ValueError) as exc:
                raise NotFound("no such tenant") from exc

    async def record_use(self, grant: GrantFacts, *, request_id: str, route: str) -> None:
        """Append this request to the grant's trail (the first use notifies the tenant).

        Raises:
            NoActiveGrant: this service admits no support staff (so nothing was admitted).
        """
        support = self._support
        if support is None:
            raise NoActiveGrant("this service does not admit support staff")

        def record() -> None:
            support.record_use(
                support.get(grant.tenant_id, grant.id), request_id=request_id, route=route
            )

        await anyio.to_thread.run_sync(record)

    def _signed_grant(
        self, support: SupportAccess, tenant_id: str, grant_id: str, principal: Principal
    ) -> Grant | None:
        """The grant a context token names, if it is active and still this engineer's."""
        try:
            grant = support.get(tenant_id, grant_id)
        except NotFound:
            return None
        if not grant.active_at(self._clock.now()):
            return None
        if (grant.engineer, grant.engineer_issuer) != (principal.subject, principal.issuer):
            return None
        return grant


def under_grant(ctx: TenantContext, grant: GrantFacts) -> TenantContext:
    """The context of a support principal under ``grant``: it names the grant, and the
    principal holds only the scopes both its token and the grant allow."""
    principal = replace(ctx.principal, scopes=ctx.principal.scopes & grant.scopes)
    return replace(ctx, principal=principal, support_grant_id=grant.id)
