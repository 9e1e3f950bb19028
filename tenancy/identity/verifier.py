"""Access-token verification with PyJWT, pinned per issuer.

What is checked, in order, before a token becomes a ``Principal``:
size cap; header and payload parse (PyJWT); ``typ`` is an access-token type (so ID and
refresh tokens are refused); ``iss`` exactly equals a configured issuer; ``alg`` is one of
that issuer's pinned asymmetric algorithms (never ``none``, never HS*); the ``kid`` is in
the issuer's JWKS and its key type matches ``alg``; the signature; ``aud`` equals the
audience (``strict_aud``); ``iss``, ``aud``, ``sub``, ``exp``, ``iat`` and ``tid`` are
present (``require=``); ``exp``, ``nbf`` and ``iat`` against the injected clock with the
configured leeway; a bounded lifetime; ``sub``, ``roles`` and ``scope`` free of control
characters and lone surrogates, ``tid`` a canonical UUID (``tenancy.identity.claims``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import anyio.to_thread
import jwt
from jwt.exceptions import PyJWTError

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal, PrincipalKind
from tenancy.errors import ConfigurationError, InvalidToken
from tenancy.identity.cache import VerifiedTokenCache
from tenancy.identity.claims import principal_from
from tenancy.identity.keys import (
    ASYMMETRIC_ALGORITHMS,
    JWKSKeySource,
    RefreshNeeded,
    select_key,
)

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "tid")
ACCESS_TOKEN_TYPES = frozenset({"at+jwt"})
DEFAULT_MAX_TOKEN_BYTES = 8 * 1024
_MAX_NUMERIC_DATE = 2**40  # ~ year 36812: far beyond any real token, far below float limits


@dataclass(frozen=True, slots=True)
class Issuer:
    """A trusted token issuer: its exact ``iss``, our audience, its keys and algorithms."""

    issuer: str
    audience: str
    keys: JWKSKeySource
    algorithms: frozenset[str]
    token_types: frozenset[str] = ACCESS_TOKEN_TYPES
    kinds: frozenset[PrincipalKind] = frozenset({PrincipalKind.USER})

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ConfigurationError("an issuer needs a non-empty issuer and audience")
        bad = self.algorithms - ASYMMETRIC_ALGORITHMS
        if not self.algorithms or bad:
            raise ConfigurationError(
                f"issuer {self.issuer!r}: algorithms must be a non-empty subset of "
                f"{sorted(ASYMMETRIC_ALGORITHMS)}, got {sorted(self.algorithms)}"
            )
        if not self.token_types:
            raise ConfigurationError("an issuer needs at least one accepted token type")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The outcome of a successful verification."""

    principal: Principal
    claims: Mapping[str, Any] = field(repr=False)
    issuer: Issuer = field(repr=False)
    kid: str
    expires_at: float

    # A user's access token names no forwarding service, grant or request of its own.
    request_id: None = None
    caller: None = None
    support_grant_id: None = None
    region: None = None


class TokenVerifier:
    """Verifies access tokens from a fixed set of issuers.

    ``verify`` may block on a JWKS fetch; ``verify_async`` never blocks the event loop
    (fetches run in a worker thread). Both serve repeated tokens from a
    :class:`VerifiedTokenCache` while the token is unexpired and its key still trusted,
    asking it once per call. They share one synchronous core; the async methods differ
    only in awaiting the JWKS fetch.
    """

    def __init__(
        self,
        issuers: Iterable[Issuer],
        *,
        clock: Clock = SYSTEM_CLOCK,
        leeway: float = 30.0,
        max_lifetime: float = 24 * 3600.0,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache: VerifiedTokenCache[VerifiedToken] | None = None,
    ) -> None:
        by_name: dict[str, Issuer] = {}
        for issuer in issuers:
            if issuer.issuer in by_name:
                raise ConfigurationError(f"issuer {issuer.issuer!r} configured twice")
            by_name[issuer.issuer] = issuer
        if not by_name:
            raise ConfigurationError("TokenVerifier needs at least one issuer")
        if not 0 <= leeway <= 300:
            raise ConfigurationError("leeway must be between 0 and 300 seconds")
        if max_token_bytes < 256:
            raise ConfigurationError("max_token_bytes is too small for any real token")
        self._issuers = by_name
        self._clock = clock
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._max_bytes = max_token_bytes
        self._cache = cache if cache is not None else VerifiedTokenCache()
        for configured in by_name.values():
            configured.keys.on_keys_removed(self._forget_removed_keys(configured.keys))

    def verify(self, token: str | bytes) -> VerifiedToken:
        """Verify ``token``, or return its cached verification; may fetch the issuer's
        JWKS (blocking).

        Raises:
            InvalidToken: any check failed; ``reason`` says which, for logs only.
        """
        now = self._clock.timestamp()
        hit = self.cached(token, now=now)
        if hit is not None:
            return hit
        try:
            return self._verify(token, now, may_refresh=True)
        except RefreshNeeded as need:
            need.keys.refresh(now)
        return self._verify(token, now, may_refresh=False)

    async def verify_async(self, token: str | bytes, *, now: float | None = None) -> VerifiedToken:
        """Like :meth:`verify`, with any JWKS fetch moved to a worker thread."""
        now = self._clock.timestamp() if now is None else now
        hit = self.cached(token, now=now)
        if hit is not None:
            return hit
        return await self.authenticate(token, now=now)

    async def authenticate(self, token: str | bytes, *, now: float) -> VerifiedToken:
        """Verify ``token`` fully, without reading the cache (the middleware's entry point,
        :class:`tenancy.authn.Authenticator`: it has just asked :meth:`cached`). The
        result is cached; a JWKS fetch runs in a worker thread, never on the event loop.

        Raises:
            InvalidToken: any check failed.
        """
        try:
            return self._verify(token, now, may_refresh=True)
        except RefreshNeeded as need:
            await anyio.to_thread.run_sync(need.keys.refresh, now)
        return self._verify(token, now, may_refresh=False)

    def cached(self, token: str | bytes, *, now: float) -> VerifiedToken | None:
        """The earlier verification of ``token`` if still valid; no parsing, no I/O.

        Results verified by a key that later leaves the issuer's JWKS are dropped when
        the refresh that removed it completes.
        """
        if len(token) > self._max_bytes:
            return None
        return self._cache.get(VerifiedTokenCache.digest(token), now)

    def _forget_removed_keys(self, keys: JWKSKeySource) -> Callable[[frozenset[str]], None]:
        def forget(kids: frozenset[str]) -> None:
            self._cache.discard_where(lambda v: v.issuer.keys is keys and v.kid in kids)

        return forget

    def _precheck(self, token: str | bytes) -> tuple[str, bytes]:
        if not isinstance(token, str | bytes) or not token:
            raise InvalidToken("token is empty")
        if len(token) > self._max_bytes:
            raise InvalidToken(f"token is larger than {self._max_bytes} bytes")
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError as exc:
                raise InvalidToken("token is not ASCII") from exc
        return token, VerifiedTokenCache.digest(token)

    def _verify(self, raw: str | bytes, now: float, *, may_refresh: bool) -> VerifiedToken:
        """One verification, the sync core of every public method; caches the result.

        Raises:
            RefreshNeeded: the ``kid`` is unknown and ``may_refresh``: the caller fetches
                the JWKS (blocking or in a worker thread) and calls once more without it.
        """
        token, digest = self._precheck(raw)
        try:
            unverified = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        header, payload = unverified["header"], unverified["payload"]

        iss = payload.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise InvalidToken("untrusted issuer")
        typ = header.get("typ")
        if not isinstance(typ, str) or _media_type(typ) not in issuer.token_types:
            raise InvalidToken("token type is not an access token")
        key = select_key(
            issuer.keys, header, algorithms=issuer.algorithms, now=now, may_refresh=may_refresh
        )
        alg, kid = header["alg"], header["kid"]

        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=issuer.audience,
                issuer=issuer.issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    # Time claims are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except PyJWTError as exc:
            raise InvalidToken(f"verification failed: {exc}") from exc

        expires_at = self._check_times(claims, now)
        principal = principal_from(claims, issuer=issuer.issuer, kinds=issuer.kinds)
        verified = VerifiedToken(
            principal=principal,
            claims=MappingProxyType(dict(claims)),
            issuer=issuer,
            kid=kid,
            expires_at=expires_at,
        )
        self._cache.put(digest, verified, expires_at=expires_at)
        return verified

    def _check_times(self, claims: Mapping[str, Any], now: float) -> float:
        exp = numeric_date(claims, "exp")
        iat = numeric_date(claims, "iat")
        if now >= exp + self._leeway:
            raise InvalidToken("token has expired")
        if iat > now + self._leeway:
            raise InvalidToken("token was issued in the future")
        if exp - iat > self._max_lifetime:
            raise InvalidToken("token lifetime exceeds the allowed maximum")
        if "nbf" in claims and numeric_date(claims, "nbf") > now + self._leeway:
            raise InvalidToken("token is not yet valid")
        return exp


def numeric_date(claims: Mapping[str, Any], name: str) -> float:
    """The claim ``name`` as a JWT NumericDate (seconds since the epoch).

    Raises:
        InvalidToken: the claim is missing, not a number (booleans included), not finite, or
            outside ``0 <= value < 2**40``.
    """
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} claim is not a NumericDate")
    # Bound it before converting: a huge integer would overflow float().
    if isinstance(value, int) and not 0 <= value < _MAX_NUMERIC_DATE:
        raise InvalidToken(f"{name} claim is out of range")
    if not math.isfinite(value) or not 0 <= value < _MAX_NUMERIC_DATE:
        raise InvalidToken(f"{name} claim is out of range")
    return float(value)


def _media_type(typ: str) -> str:
    # RFC 7515 §4.1.9: "application/" may be omitted; media types compare case-insensitively.
    lowered = typ.lower()
    return lowered.removeprefix("application/")


def trusted_issuer(
    issuer: str,
    *,
    audience: str,
    keys: JWKSKeySource,
    algorithms: Collection[str],
    token_types: Collection[str] = ACCESS_TOKEN_TYPES,
    kinds: Collection[PrincipalKind] = (PrincipalKind.USER,),
) -> Issuer:
    """Build an :class:`Issuer` from plain collections."""
    return Issuer(
        issuer=issuer,
        audience=audience,
        keys=keys,
        algorithms=frozenset(algorithms),
        token_types=frozenset(t.lower() for t in token_types),
        kinds=frozenset(kinds),
    )
