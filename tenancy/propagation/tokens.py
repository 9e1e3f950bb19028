"""Context tokens: the tenant context of one call, signed by the service that makes it.

A context token is a compact JWS (EdDSA by default, ES256 optional) with the header
``typ: tenancy-ctx+jwt`` and these claims (format version ``ver: 1``):

=========  ===============================================================
``iss``    the minting service (``ServiceKeyring.service``)
``aud``    the one service the call goes to
``sub``    the principal's subject; ``piss`` its original token issuer
``kind``   principal kind; ``roles``; ``aal`` its authentication assurance
``tid``    tenant id; ``region`` the tenant's home region
``scope``  the scopes this call needs: never more than the caller holds
``rid``    the originating request id; ``sgid`` the support grant id, if any
``iat``    issued at; ``exp`` at most 60 s later (message tokens: configurable)
``jti``    a random id, so a replay inside the lifetime is refused
``bdy``    message tokens only: SHA-256 of the message body
=========  ===============================================================

The user's own access token never travels downstream: a backend sees only what the
call needs, for a minute, for itself.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Collection

import jwt

from tenancy import consistency
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import TenantContext, current
from tenancy.errors import ConfigurationError, InsufficientScope
from tenancy.propagation.keyring import ServiceKeyring

CONTEXT_TOKEN_TYPE = "tenancy-ctx+jwt"  # noqa: S105  (a media type, not a secret)
FORMAT_VERSION = 1
DEFAULT_TTL = 60
REQUIRED_CLAIMS = (
    "ver",
    "iss",
    "aud",
    "sub",
    "piss",
    "kind",
    "tid",
    "region",
    "scope",
    "aal",
    "rid",
    "iat",
    "exp",
    "jti",
)


def body_digest(body: bytes) -> str:
    """The ``bdy`` claim: unpadded base64url SHA-256 of a message body."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


class ContextTokenMinter:
    """Mints context tokens from the bound :class:`TenantContext`.

    Args:
        keyring: this service's signing keys; its ``service`` is the tokens' ``iss``.
        ttl: default lifetime in seconds.
        max_ttl: the longest lifetime a caller may ask for (60 s for calls; raise it
            only for message tokens, which wait in a queue).
    """

    def __init__(
        self,
        keyring: ServiceKeyring,
        *,
        clock: Clock = SYSTEM_CLOCK,
        ttl: int = DEFAULT_TTL,
        max_ttl: int = DEFAULT_TTL,
    ) -> None:
        if not 1 <= ttl <= max_ttl <= 24 * 3600:
            raise ConfigurationError("need 1 <= ttl <= max_ttl <= 86400 seconds")
        self._keyring = keyring
        self._clock = clock
        self._ttl = ttl
        self._max_ttl = max_ttl

    @property
    def service(self) -> str:
        """This service's name, the ``iss`` of every token it mints (the keyring's
        ``service``)."""
        return self._keyring.service

    def mint(
        self,
        ctx: TenantContext | None = None,
        *,
        audience: str,
        scopes: Collection[str],
        ttl: int | None = None,
        body: bytes | None = None,
    ) -> str:
        """A token for one call to ``audience`` carrying only ``scopes``.

        ``ctx`` defaults to the bound context; there is no way to mint without one.

        Raises:
            NoTenantContext: no context is bound and none was given.
            InsufficientScope: ``scopes`` asks for a scope the principal does not hold.
            ConfigurationError: empty audience, or ``ttl`` outside ``1..max_ttl``.
            LayerMismatch: consistency mode, and ``ctx`` is another tenant's.
        """
        ctx = current() if ctx is None else ctx
        consistency.observe(consistency.PROPAGATION, ctx.tenant_id)  # the tid it signs
        if not audience or isinstance(scopes, str):
            raise ConfigurationError("mint needs an audience and a collection of scopes")
        wanted = frozenset(scopes)
        missing = sorted(wanted - ctx.principal.scopes)
        if missing:
            raise InsufficientScope(missing[0])
        lifetime = self._ttl if ttl is None else ttl
        if not 1 <= lifetime <= self._max_ttl:
            raise ConfigurationError(f"ttl must be between 1 and {self._max_ttl} seconds")
        issued = int(self._clock.timestamp())
        principal = ctx.principal
        claims: dict[str, object] = {
            "ver": FORMAT_VERSION,
            "iss": self._keyring.service,
            "aud": audience,
            "sub": principal.subject,
            "piss": principal.issuer,
            "kind": principal.kind.value,
            "roles": sorted(principal.roles),
            "aal": int(principal.assurance),
            "tid": ctx.tenant_id,
            "region": ctx.region,
            "scope": " ".join(sorted(wanted)),
            "rid": ctx.request_id,
            "iat": issued,
            "exp": issued + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        if ctx.support_grant_id is not None:
            claims["sgid"] = ctx.support_grant_id
        if principal.device_trusted:
            claims["dvt"] = True
        if body is not None:
            claims["bdy"] = body_digest(body)
        key = self._keyring.active
        return jwt.encode(
            claims,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": CONTEXT_TOKEN_TYPE},
        )

    def __repr__(self) -> str:
        return f"ContextTokenMinter({self._keyring.service!r}, ttl={self._ttl})"
