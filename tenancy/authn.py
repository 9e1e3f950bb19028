"""What the middleware needs from an authenticator, and how a result becomes a context.

Two authenticators ship: :class:`tenancy.identity.TokenVerifier` for users' access tokens
at the edge, and :class:`tenancy.propagation.ContextTokenVerifier` for the signed context
tokens that services pass downstream. Both yield an :class:`Authentication`; the tenant
it names is then resolved in the registry and checked (status, region) the same way.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tenancy.context import Principal, TenantContext
from tenancy.errors import InvalidToken
from tenancy.tenants.model import Tenant


class Authentication(Protocol):
    """A verified credential: who, until when, and what a forwarding service added."""

    @property
    def principal(self) -> Principal:
        """Who the credential proves: issuer, tenant, subject, roles, scopes, assurance."""

    @property
    def expires_at(self) -> float:
        """When the credential stops being valid (seconds since the epoch)."""

    @property
    def request_id(self) -> str | None:
        """The originating request's id, carried so logs correlate across services."""

    @property
    def caller(self) -> str | None:
        """The service that forwarded the context, if it came in a context token."""

    @property
    def support_grant_id(self) -> str | None:
        """The support grant a support principal acts under, if the credential names one.
        Naming it proves nothing: the grant itself is checked, never taken on trust."""

    @property
    def region(self) -> str | None:
        """The tenant's region as the credential states it, if it states one."""


@runtime_checkable
class Authenticator(Protocol):
    """Turns a bearer token into an :class:`Authentication`, or raises ``InvalidToken``."""

    def cached(self, token: str | bytes, *, now: float) -> Authentication | None:
        """An earlier result for ``token`` if one may be reused; never does I/O."""

    async def authenticate(self, token: str | bytes, *, now: float) -> Authentication:
        """Verify ``token`` fully; must not block the event loop."""


def build_context(
    auth: Authentication, tenant: Tenant, *, region: str, request_id: str
) -> TenantContext:
    """The context for ``auth`` once its tenant is known.

    Raises:
        TenantSuspended, TenantOffboarded, WrongRegion: the tenant may not be served here.
        InvalidToken: the credential states another region than the tenant's home.
    """
    tenant.ensure_servable(region=region)
    if auth.region is not None and auth.region != tenant.region:
        raise InvalidToken("credential states another region than the tenant's home")
    return TenantContext(
        tenant.id,
        tenant.slug,
        tenant.region,
        auth.principal,
        auth.request_id or request_id,
        auth.caller,
        auth.support_grant_id,
    )
