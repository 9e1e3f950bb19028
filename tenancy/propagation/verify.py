"""Verifying context tokens in the service they were minted for.

Checked, in order: size; header parse; ``typ`` is ``tenancy-ctx+jwt`` (a user's access
token, an ID token or anything else is refused); the ``kid`` is in the JWKS of a trusted
service, and ``alg`` is pinned for that service; the signature; ``iss`` exactly equals
that service and ``aud`` this one (one string, never a list); every claim present with its
type; format version; ``iat``/``exp`` (and ``nbf``, if a signer sets it) against the
injected clock with a small leeway and a lifetime of at most ``max_lifetime``; the scopes
within what that service may delegate; the body digest for message tokens; and last, the
``jti`` is seen for the first time (so a forged or expired token cannot fill the replay
guard).

The token is parsed once: only the header segment is decoded to find the key, then
PyJWT's ``PyJWS`` parses the token and verifies its signature with that key, and the
claims are read from the payload it verified. The checks of single claims are in
:mod:`tenancy.propagation.verify_claims`.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import jwt
from jwt.exceptions import PyJWTError

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal, PrincipalKind
from tenancy.errors import ConfigurationError, InvalidToken
from tenancy.identity.keys import ASYMMETRIC_ALGORITHMS, JWKSKeySource, select_key
from tenancy.identity.verifier import numeric_date
from tenancy.propagation.replay import MemoryReplayGuard, ReplayGuard
from tenancy.propagation.tokens import (
    CONTEXT_TOKEN_TYPE,
    DEFAULT_TTL,
    FORMAT_VERSION,
    REQUIRED_CLAIMS,
)
from tenancy.propagation.verify_claims import (
    check_body,
    claims_object,
    principal_from,
    region_claim,
    string_claim,
)

MAX_TOKEN_BYTES = 8 * 1024
MAX_HEADER_CHARS = 1024  # ours are ~110; a longer header is not a context token
MAX_REMEMBERED_HEADERS = 64
_BASE64URL_TO_STANDARD = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class TrustedService:
    """A service whose context tokens we accept, and the most it may delegate.

    ``scopes`` is a ceiling: a token from this service naming any other scope is
    refused, so a compromised or buggy caller cannot grant itself more than it was
    trusted with. ``kinds`` are the principal kinds it may forward.
    """

    name: str
    keys: JWKSKeySource
    scopes: frozenset[str]
    algorithms: frozenset[str] = frozenset({"EdDSA"})
    kinds: frozenset[PrincipalKind] = frozenset({PrincipalKind.USER, PrincipalKind.SERVICE})

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a trusted service needs a name")
        if not self.algorithms or self.algorithms - ASYMMETRIC_ALGORITHMS:
            raise ConfigurationError(
                f"service {self.name!r}: algorithms must be a subset of "
                f"{sorted(ASYMMETRIC_ALGORITHMS)}"
            )


def trusted_service(
    name: str,
    *,
    keys: JWKSKeySource,
    scopes: Collection[str],
    algorithms: Collection[str] = ("EdDSA",),
    kinds: Collection[PrincipalKind] = (PrincipalKind.USER, PrincipalKind.SERVICE),
) -> TrustedService:
    """Build a :class:`TrustedService` from plain collections."""
    if isinstance(scopes, str):
        raise ConfigurationError("scopes must be a collection of scope names")
    return TrustedService(name, keys, frozenset(scopes), frozenset(algorithms), frozenset(kinds))


@dataclass(frozen=True, slots=True)
class VerifiedContext:
    """A verified context token (an :class:`tenancy.authn.Authentication`)."""

    principal: Principal
    expires_at: float
    request_id: str
    caller: str
    region: str
    jti: str
    support_grant_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


class ContextTokenVerifier:
    """Accepts context tokens minted for ``audience`` by trusted services only.

    Args:
        audience: this service's name; tokens for any other service are refused.
        services: the services allowed to call this one.
        leeway: clock skew tolerated on ``iat``/``exp``, seconds (at most 30).
        max_lifetime: the longest ``exp - iat`` accepted (60 s for calls; message
            consumers raise it to the publisher's ``max_ttl``).
        replay: where seen ``jti`` values are kept (default: this process's memory; see
            :mod:`tenancy.propagation.replay` to share it across replicas).
        check_replay: turn off only for at-least-once message delivery, where a
            redelivered message legitimately repeats its token (the ``bdy`` binding
            still ties the token to that exact message).
    """

    def __init__(
        self,
        *,
        audience: str,
        services: Iterable[TrustedService],
        clock: Clock = SYSTEM_CLOCK,
        leeway: float = 5.0,
        max_lifetime: float = DEFAULT_TTL,
        replay: ReplayGuard | None = None,
        check_replay: bool = True,
    ) -> None:
        self._services: dict[str, TrustedService] = {}
        for service in services:
            if service.name in self._services:
                raise ConfigurationError(f"service {service.name!r} trusted twice")
            self._services[service.name] = service
        if not audience:
            raise ConfigurationError("a context token verifier needs its own audience")
        if not self._services:
            raise ConfigurationError("a context token verifier needs a trusted service")
        if not 0 <= leeway <= 30:
            raise ConfigurationError("leeway must be between 0 and 30 seconds")
        if not 1 <= max_lifetime <= 24 * 3600:
            raise ConfigurationError("max_lifetime must be between 1 s and 24 h")
        self.audience = audience
        self._clock = clock
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._headers: dict[str, dict[str, Any]] = {}  # header segment -> its JSON
        # One PyJWS that knows only the algorithms some trusted service may use.
        self._jws = jwt.PyJWS(
            algorithms=sorted({alg for s in self._services.values() for alg in s.algorithms})
        )
        self._replay: ReplayGuard | None = (
            (replay if replay is not None else MemoryReplayGuard()) if check_replay else None
        )

    def verify(
        self, token: str | bytes, *, now: float | None = None, body: bytes | None = None
    ) -> VerifiedContext:
        """Verify ``token`` (blocking if the caller's JWKS must be fetched).

        ``body`` must be given for message tokens and must match their ``bdy``.

        Raises:
            InvalidToken: any check failed; ``reason`` says which, for logs only.
        """
        now = self._clock.timestamp() if now is None else now
        try:
            return self._verify(token, now, body, may_refresh=True)
        except _RefreshDue as due:
            due.refresh(now)
        return self._verify(token, now, body, may_refresh=False)

    async def verify_async(
        self, token: str | bytes, *, now: float | None = None, body: bytes | None = None
    ) -> VerifiedContext:
        """Like :meth:`verify`, with any JWKS fetch in a worker thread: the same sync core,
        only the fetch is awaited."""
        now = self._clock.timestamp() if now is None else now
        try:
            return self._verify(token, now, body, may_refresh=True)
        except _RefreshDue as due:
            await anyio.to_thread.run_sync(due.refresh, now)
        return self._verify(token, now, body, may_refresh=False)

    async def authenticate(self, token: str | bytes, *, now: float) -> VerifiedContext:
        """The middleware's entry point (:class:`tenancy.authn.Authenticator`)."""
        return await self.verify_async(token, now=now)

    def cached(self, token: str | bytes, *, now: float) -> None:
        """Never a cache hit: every context token is single-use."""
        return None

    def _verify(
        self, raw: str | bytes, now: float, body: bytes | None, *, may_refresh: bool
    ) -> VerifiedContext:
        """One verification, the sync core of both public methods.

        Raises:
            _RefreshDue: the ``kid`` is unknown and ``may_refresh``: the caller fetches
                the JWKS (blocking or in a worker thread) and calls once more without it.
        """
        token = _ascii(raw)
        # The token is parsed once, by PyJWT, with the key its header names. Choosing that
        # key needs the header first: only its (short) segment is decoded here, as
        # jwt.get_unverified_header would but without decoding the whole token, and it is
        # trusted only as far as PyJWT's verified header equals it. A trusted signer's
        # header is the same bytes on every token its key signs, so the decoded headers
        # of verified signatures are remembered (a pure function of the segment: the
        # segment is the dictionary key, the header dict is never mutated).
        segment, dot, _ = token.partition(".")
        if not dot:
            raise InvalidToken("malformed context token: not a compact JWS")
        header = self._headers.get(segment)
        if header is None:
            header = _unverified_header(segment)
        if header.get("typ") != CONTEXT_TOKEN_TYPE:
            raise InvalidToken("not a context token")
        service = self._service_signing(header.get("kid"), now, may_refresh=may_refresh)
        key = select_key(
            service.keys, header, algorithms=service.algorithms, now=now, may_refresh=False
        )
        try:
            # Signature, with the algorithm pinned to the key's (select_key refused any
            # other); PyJWS parses the three segments and checks the header's kid and crit.
            decoded = self._jws.decode_complete(token, key=key, algorithms=[key.algorithm_name])
        except PyJWTError as exc:
            raise InvalidToken(f"context token verification failed: {exc}") from exc
        if decoded["header"] != header:  # the same bytes, so never; but never trust a peek
            raise InvalidToken("context token header changed between reads")
        if segment not in self._headers:  # signed by a trusted key: worth remembering
            if len(self._headers) >= MAX_REMEMBERED_HEADERS:
                self._headers.clear()  # a few per signing key: only rotation adds any
            self._headers[segment] = header
        claims = claims_object(decoded["payload"])
        # What jwt.decode checked with audience=, issuer=, strict_aud and require=.
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise InvalidToken(f"context token is missing the {name!r} claim")
        if not isinstance(claims["aud"], str) or claims["aud"] != self.audience:
            raise InvalidToken("context token audience is not this service")
        if claims["iss"] != service.name:
            raise InvalidToken(
                f"context token issuer is not {service.name!r}, the service whose key signed it"
            )
        if claims["ver"] != FORMAT_VERSION or isinstance(claims["ver"], bool):
            raise InvalidToken("unsupported context token version")
        expires_at = self._check_times(claims, now)
        principal = principal_from(claims, service)
        check_body(claims, body)
        jti = claims["jti"]
        if not isinstance(jti, str) or not 16 <= len(jti) <= 64:
            raise InvalidToken("jti claim invalid")
        if self._replay is not None and not self._replay.first_use(
            f"{service.name}/{jti}", expires_at=expires_at + self._leeway, now=now
        ):
            raise InvalidToken("context token replayed (or replay guard full)")
        sgid = claims.get("sgid")
        if sgid is not None and not isinstance(sgid, str):
            raise InvalidToken("sgid claim invalid")
        return VerifiedContext(
            principal=principal,
            expires_at=expires_at,
            request_id=string_claim(claims, "rid", 128),
            caller=service.name,
            region=region_claim(claims),
            jti=jti,
            support_grant_id=sgid,
            claims=claims,
        )

    def _service_signing(self, kid: object, now: float, *, may_refresh: bool) -> TrustedService:
        """The trusted service whose JWKS holds ``kid`` (key ids are thumbprints)."""
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidToken("kid header missing or invalid")
        for service in self._services.values():
            if service.keys.lookup(kid) is not None:
                return service
        if may_refresh:
            due = [s.keys for s in self._services.values() if s.keys.refresh_due(kid, now)]
            if due:
                raise _RefreshDue(due)
        raise InvalidToken("unknown signing key: no trusted service holds it")

    def _check_times(self, claims: Mapping[str, Any], now: float) -> float:
        iat, exp = numeric_date(claims, "iat"), numeric_date(claims, "exp")
        if now >= exp + self._leeway:
            raise InvalidToken("context token has expired")
        if iat > now + self._leeway:
            raise InvalidToken("context token was issued in the future")
        # Never minted by tenancy, but a trusted signer's nbf is honoured, as PyJWT would.
        if "nbf" in claims and numeric_date(claims, "nbf") > now + self._leeway:
            raise InvalidToken("context token is not valid yet (nbf)")
        if not 0 < exp - iat <= self._max_lifetime:
            raise InvalidToken("context token lifetime exceeds the allowed maximum")
        return exp


class _RefreshDue(Exception):
    """Internal: the key id is unknown and these JWKS sources may be refreshed."""

    def __init__(self, sources: list[JWKSKeySource]) -> None:
        self.sources = sources

    def refresh(self, now: float) -> None:
        """Fetch every due JWKS (blocking: on the event loop, run it in a worker thread)."""
        for keys in self.sources:
            keys.refresh(now)


def _unverified_header(segment: str) -> dict[str, Any]:
    """The JOSE header a token's first segment holds, before any verification (only
    this segment is decoded: ``jwt.get_unverified_header`` decodes all three). Strict
    base64, so what is read here is what PyJWT reads."""
    if len(segment) > MAX_HEADER_CHARS:
        raise InvalidToken("malformed context token: header too long")
    padded = segment.translate(_BASE64URL_TO_STANDARD) + "=" * (-len(segment) % 4)
    try:
        header = json.loads(binascii.a2b_base64(padded, strict_mode=True))
    except (ValueError, RecursionError) as exc:  # binascii, Unicode and JSON errors
        raise InvalidToken(f"malformed context token: invalid header: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed context token: the header is not a JSON object")
    return header


def _ascii(token: str | bytes) -> str:
    if not isinstance(token, str | bytes) or not token:
        raise InvalidToken("token is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken(f"token is larger than {MAX_TOKEN_BYTES} bytes")
    if isinstance(token, bytes):
        try:
            return token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidToken("token is not ASCII") from exc
    return token
