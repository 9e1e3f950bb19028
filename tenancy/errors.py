"""One exception tree for the whole library.

Every error has a stable ``code``. Library errors carry no HTTP status: the middleware
maps them to RFC 9457 problem responses in one table (``tenancy.problems``). Messages
never say whether another tenant's object exists.
"""

from __future__ import annotations


class TenancyError(Exception):
    """Base of every error raised by tenancy."""

    code = "tenancy-error"


class ConfigurationError(TenancyError):
    """A component was built with settings that would make it unsafe or unusable."""

    code = "configuration-error"


# -- context ---------------------------------------------------------------------------


class NoTenantContext(TenancyError):
    """Code that needs a tenant ran with none bound (fail closed)."""

    code = "no-tenant-context"


class TenantContextConflict(TenancyError):
    """A context for one tenant was bound inside a context of another tenant."""

    code = "tenant-context-conflict"


class InsufficientScope(TenancyError):
    """The principal lacks a scope the operation needs."""

    code = "insufficient-scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this operation needs the scope {scope!r}")
        self.scope = scope


# -- identity --------------------------------------------------------------------------


class AuthenticationError(TenancyError):
    """The request carries no credentials we can accept."""

    code = "authentication-failed"


class MissingCredentials(AuthenticationError):
    """No bearer token was presented."""

    code = "missing-credentials"


class InvalidToken(AuthenticationError):
    """A token was presented but failed verification.

    ``reason`` is for logs and audit only; callers see a generic message, so a failed
    attempt teaches an attacker nothing about which check refused it.
    """

    code = "invalid-token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeySourceUnavailable(TenancyError):
    """The issuer's keys could not be fetched and none are cached."""

    code = "key-source-unavailable"


# -- authorization -------------------------------------------------------------------


class AuthorizationError(TenancyError):
    """Base for policy decisions that do not allow the action."""

    code = "authorization-error"


class AccessDenied(AuthorizationError):
    """The policy decided: not allowed. ``reasons`` are for logs and audit only."""

    code = "access-denied"

    def __init__(self, reasons: tuple[str, ...] = ()) -> None:
        super().__init__("the policy does not allow this action")
        self.reasons = reasons
        self.reason = ",".join(reasons) or "denied"


class DecisionUnavailable(AuthorizationError):
    """No valid decision could be had (engine down, timeout, error, undefined or malformed
    result): the action is refused, and the caller may retry later."""

    code = "decision-unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- keys ------------------------------------------------------------------------------


class KeyManagementError(TenancyError):
    """Base for per-tenant key errors."""

    code = "key-error"


class KeyUnavailable(KeyManagementError):
    """The tenant's key cannot be used now (disabled or revoked by its owner, or its key
    service is unreachable). Nothing is decrypted; nothing falls back to another key."""

    code = "key-unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyDestroyed(KeyUnavailable):
    """The tenant's keys were destroyed (crypto-shredding): its data is gone for good."""

    code = "key-destroyed"


class DecryptionFailed(KeyManagementError):
    """A ciphertext failed its integrity check: tampered, truncated, or not bound to this
    tenant, table, column and row. Deliberately carries no detail for callers."""

    code = "decryption-failed"

    def __init__(self, reason: str = "decryption failed") -> None:
        super().__init__("decryption failed")
        self.reason = reason


class UnknownKeyVersion(DecryptionFailed):
    """A ciphertext names a format or data-key version that does not exist."""

    code = "unknown-key-version"


class UnsealedWrite(KeyManagementError, ValueError):
    """A value for an encrypted column reached the database without being encrypted (a
    Core statement bypassing the ORM, or a missing key service on the session)."""

    code = "unsealed-write"


# -- support access --------------------------------------------------------------------


class SupportAccessError(TenancyError):
    """Base for support-access refusals."""

    code = "support-access-error"


class ConsentRefused(SupportAccessError):
    """An approval, denial or revocation that the rules do not allow: self-approval, a
    non-admin or another tenant's admin, no MFA, wider scopes or a longer duration than
    allowed, or a grant not in a state that allows it."""

    code = "consent-refused"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoActiveGrant(SupportAccessError):
    """A support principal asked for a tenant it holds no active grant for."""

    code = "no-active-grant"


# -- propagation -----------------------------------------------------------------------


class DownstreamUnavailable(TenancyError):
    """A downstream service could not be reached or did not answer in time."""

    code = "downstream-unavailable"


# -- tenants ---------------------------------------------------------------------------


class TenantError(TenancyError):
    """Base for tenant registry errors."""

    code = "tenant-error"


class UnknownTenant(TenantError):
    """No tenant with that id or slug exists (or the caller may not know it does)."""

    code = "unknown-tenant"


class TenantSuspended(TenantError):
    """The tenant is suspended: its users and services are refused until reactivation."""

    code = "tenant-suspended"


class TenantOffboarded(TenantError):
    """The tenant was offboarded: it can never be served again."""

    code = "tenant-offboarded"


class WrongRegion(TenantError):
    """The tenant's data is homed in another region than this service instance.

    ``tenant_id``, ``home_region`` and ``region`` are for logs and audit only."""

    code = "wrong-region"

    def __init__(self, message: str = "tenant is homed in another region", *,
                 tenant_id: str | None = None, home_region: str | None = None,
                 region: str | None = None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.home_region = home_region
        self.region = region


class InvalidTenantField(TenantError, ValueError):
    """A slug, display name or region does not meet the registry's rules."""

    code = "invalid-tenant-field"


class DuplicateSlug(TenantError):
    """Another tenant already uses that slug."""

    code = "duplicate-slug"


class InvalidTransition(TenantError):
    """The requested lifecycle change is not allowed from the tenant's current status."""

    code = "invalid-transition"


# -- resources -------------------------------------------------------------------------


class NotFound(TenancyError):
    """The object does not exist for this tenant (never says whether it exists elsewhere)."""

    code = "not-found"


class InvalidRequest(TenancyError, ValueError):
    """The request body or parameters are malformed."""

    code = "invalid-request"

    def __init__(self, message: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the route accepts (refused before it is all read)."""

    code = "payload-too-large"


class UnsupportedMediaType(InvalidRequest):
    """The request body is not in a format the route accepts (its content type)."""

    code = "unsupported-media-type"


# -- scoping ---------------------------------------------------------------------------


class CrossTenantWrite(TenancyError):
    """An object of another tenant was about to be written (flush refused, nothing sent)."""

    code = "cross-tenant-write"


# -- consistency -----------------------------------------------------------------------


class LayerMismatch(TenancyError):
    """Two layers of one request named different tenants (consistency mode): fail closed.

    ``expected_layer``/``expected_tenant_id`` (the verified token's) and ``layer``/
    ``tenant_id`` (the layer that disagreed) are for logs and audit only."""

    code = "tenant-layer-mismatch"

    def __init__(self, message: str | None = None, *, expected_layer: str = "",
                 expected_tenant_id: str = "", layer: str = "", tenant_id: str = "") -> None:
        super().__init__(message or f"tenant layers disagree: {expected_layer} names "
                         f"{expected_tenant_id!r}, {layer} names {tenant_id!r}")
        self.expected_layer = expected_layer
        self.expected_tenant_id = expected_tenant_id
        self.layer = layer
        self.tenant_id = tenant_id
        self.reason = f"{layer}-disagrees-with-{expected_layer}"
