"""One exception tree for the whole library.

Every error has a stable ``code`` and a ``reason`` for logs and audit (the code unless
a more precise one is given). Library errors carry no HTTP status: the middleware maps
them to RFC 9457 problem responses in one table (``tenancy.problems``). Messages never
say whether another tenant's object exists. Every library error is defined here, grouped
by concern; feature packages re-export theirs (``tenancy.exports.ExportGone``).
"""

from __future__ import annotations


class TenancyError(Exception):
    """Base of every error raised by tenancy.

    ``reason`` says which check refused, for logs and audit only (never shown to
    callers); it is never empty and defaults to the class's ``code``.
    """

    code = "tenancy-error"
    reason: str

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        if message:
            super().__init__(message)
        else:
            super().__init__()
        self.reason = reason or self.code


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
        super().__init__(reason, reason=reason)


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
        super().__init__(
            "the policy does not allow this action", reason=",".join(reasons) or "denied"
        )
        self.reasons = reasons


class PolicyBundleInvalid(ConfigurationError):
    """A policy bundle archive is malformed, unsafe to unpack, or fails its signature
    check (a file missing, added or changed; a wrong key); nothing of it is loaded."""

    code = "policy-bundle-invalid"


class DecisionUnavailable(AuthorizationError):
    """No valid decision could be had (engine down, timeout, error, undefined or malformed
    result): the action is refused, and the caller may retry later."""

    code = "decision-unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, reason=reason)


# -- keys ------------------------------------------------------------------------------


class KeyManagementError(TenancyError):
    """Base for per-tenant key errors."""

    code = "key-error"


class KeyUnavailable(KeyManagementError):
    """The tenant's key cannot be used now (disabled or revoked by its owner, or its key
    service is unreachable). Nothing is decrypted; nothing falls back to another key."""

    code = "key-unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, reason=reason)


class KeyDestroyed(KeyUnavailable):
    """The tenant's keys were destroyed (crypto-shredding): its data is gone for good."""

    code = "key-destroyed"


class DecryptionFailed(KeyManagementError):
    """A ciphertext failed its integrity check: tampered, truncated, or not bound to this
    tenant, table, column and row. Deliberately carries no detail for callers."""

    code = "decryption-failed"

    def __init__(self, reason: str = "decryption failed") -> None:
        super().__init__("decryption failed", reason=reason)


class UnknownKeyVersion(DecryptionFailed):
    """A ciphertext names a format or data-key version that does not exist."""

    code = "unknown-key-version"


class UnsealedWrite(KeyManagementError, ValueError):
    """A value for an encrypted column reached the database without being encrypted (a
    Core statement bypassing the ORM, or a missing key service on the session)."""

    code = "unsealed-write"


class ProviderUnavailable(KeyManagementError):
    """Transient: the key service did not answer (retry, then report KeyUnavailable)."""

    code = "key-provider-unavailable"


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
        super().__init__(reason, reason=reason)


class NoActiveGrant(SupportAccessError):
    """A support principal asked for a tenant it holds no active grant for."""

    code = "no-active-grant"


class InvalidSignature(AuthenticationError):
    """A ticket webhook call has no or a wrong signature, a stale timestamp, or is a replay."""

    code = "invalid-signature"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, reason=reason)


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

    def __init__(
        self,
        message: str = "tenant is homed in another region",
        *,
        tenant_id: str | None = None,
        home_region: str | None = None,
        region: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
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


# -- residency -------------------------------------------------------------------------


class ResidencyViolation(WrongRegion):
    """A tenant's data or key was used outside its home region (code: WrongRegion's)."""

    def __init__(
        self,
        reason: str,
        *,
        tenant_id: str | None,
        home_region: str | None,
        region: str | None,
        attempted: str,
    ) -> None:
        super().__init__(tenant_id=tenant_id, home_region=home_region, region=region, reason=reason)
        self.attempted = attempted


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


# -- exports ---------------------------------------------------------------------------
# The refusals that mean "no such export" for the caller are NotFounds, so they are
# answered like a link that names nothing and reveal no other tenant's export.


class ExportError(TenancyError):
    """Base for refusals of an export download link."""

    code = "export-error"


class ExportLinkInvalid(ExportError, NotFound):
    """The link is malformed, tampered with, or signed with a key this service lacks."""

    code = "export-link-invalid"


class ExportLinkExpired(ExportError):
    """The link's access window has closed."""

    code = "export-link-expired"


class ExportTenantMismatch(ExportError, NotFound):
    """A valid link of another tenant than the caller's (answered like no such export)."""

    code = "export-tenant-mismatch"


class ExportGone(ExportError, NotFound):
    """The export no longer exists (deleted by retention or erasure)."""

    code = "export-gone"


# -- de-identification -----------------------------------------------------------------


class DeidError(TenancyError):
    """Base of de-identification errors."""

    code = "deid-error"


class ContributionRefused(DeidError):
    """The tenant's data-contribution setting is off, unknown or unreadable: nothing is
    de-identified and nothing is returned."""

    code = "contribution-refused"

    def __init__(self, tenant_id: str, reason: str = "contribution-disabled") -> None:
        super().__init__("this tenant does not allow its data to be contributed", reason=reason)
        self.tenant_id = tenant_id


class DeidSchemaError(DeidError, ValueError):
    """Base of field-schema errors; ``field`` names the offending field when known."""

    code = "deid-schema-error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidSchema(DeidSchemaError):
    """A ``RecordSchema`` was declared inconsistently (overlaps, empty, bad names)."""

    code = "deid-invalid-schema"


class RecordRejected(DeidSchemaError):
    """A record has an undeclared field or a mistyped value: the whole batch is refused."""

    code = "deid-record-rejected"

    def __init__(self, message: str, *, field: str | None = None, index: int) -> None:
        super().__init__(message, field=field)
        self.index = index


# -- scoping ---------------------------------------------------------------------------


class CrossTenantWrite(TenancyError):
    """An object of another tenant was about to be written (flush refused, nothing sent)."""

    code = "cross-tenant-write"


# -- audit -----------------------------------------------------------------------------


class AuditWriteError(TenancyError):
    """A durable audit write did not commit (in time)."""

    code = "audit-write-failed"


# -- database --------------------------------------------------------------------------


class DatabaseUnavailable(TenancyError):
    """The database connection was lost or could not be made (terminated, restarting,
    unreachable): a fault of the moment, answered 503 with ``Retry-After``."""

    code = "database-unavailable"


class InternalError(TenancyError):
    """An exception the application let escape: answered as a 500 problem that shows
    nothing of it (it is logged with its traceback and the request id)."""

    code = "internal-error"


# -- consistency -----------------------------------------------------------------------


class LayerMismatch(TenancyError):
    """Two layers of one request named different tenants (consistency mode): fail closed.

    ``expected_layer``/``expected_tenant_id`` (the verified token's) and ``layer``/
    ``tenant_id`` (the layer that disagreed) are for logs and audit only."""

    code = "tenant-layer-mismatch"

    def __init__(
        self,
        message: str | None = None,
        *,
        expected_layer: str = "",
        expected_tenant_id: str = "",
        layer: str = "",
        tenant_id: str = "",
    ) -> None:
        super().__init__(
            message
            or f"tenant layers disagree: {expected_layer} names "
            f"{expected_tenant_id!r}, {layer} names {tenant_id!r}",
            reason=f"{layer}-disagrees-with-{expected_layer}",
        )
        self.expected_layer = expected_layer
        self.expected_tenant_id = expected_tenant_id
        self.layer = layer
        self.tenant_id = tenant_id


# -- isolation test kit ----------------------------------------------------------------


class ProbeConfigError(ConfigurationError):
    """The probe configuration is unusable; the message names the key."""

    code = "probe-config"


class MatrixError(ConfigurationError):
    """The database matrix cannot be built (no tenants, not PostgreSQL, no transaction)."""

    code = "db-matrix-error"


class EvidenceInputError(TenancyError, ValueError):
    """An evidence input is unreadable, not JSON, or not the kind and version expected."""

    code = "evidence-input-invalid"
