"""Issuer signing keys from a JWKS, with a refresh that cannot be abused.

PyJWT's ``PyJWKClient`` fetches and ``PyJWKSet`` parses; this module decides *when* to
fetch, with the injected clock:

- keys are cached and refreshed when older than ``max_age``, so a key removed from the
  JWKS stops verifying within ``max_age``;
- an unknown ``kid`` may trigger a refresh, at most once per ``min_refresh_interval``, so
  tokens with random ``kid`` values cannot force unbounded fetches;
- a failed fetch keeps the keys we have (an IdP outage is not a key revocation);
- only asymmetric keys for the issuer's pinned algorithms are kept: an ``oct`` key in a
  JWKS can never become an HMAC secret.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientError, PyJWKSetError, PyJWTError

from tenancy.errors import ConfigurationError, InvalidToken, KeySourceUnavailable

logger = logging.getLogger("tenancy.identity")

ASYMMETRIC_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
_KEY_TYPES = {"EdDSA": "OKP", "ES256": "EC", "RS256": "RSA"}

Fetch = Callable[[], Mapping[str, Any]]


class JWKSKeySource:
    """Signing keys of one issuer, looked up by ``kid`` without I/O on the hot path.

    ``lookup`` never does I/O. ``refresh_due`` says whether a ``refresh`` (blocking I/O;
    run it off the event loop) is due for a given ``kid``; ``refresh`` keeps the current
    keys if the fetch fails.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        algorithms: Collection[str],
        max_age: float = 300.0,
        min_refresh_interval: float = 30.0,
        description: str = "jwks",
    ) -> None:
        bad = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if not algorithms or bad:
            raise ConfigurationError(
                f"issuer algorithms must be a non-empty subset of {sorted(ASYMMETRIC_ALGORITHMS)}"
            )
        if max_age <= 0 or min_refresh_interval < 0:
            raise ConfigurationError("max_age must be > 0 and min_refresh_interval >= 0")
        self._fetch = fetch
        self._algorithms = frozenset(algorithms)
        self._max_age = max_age
        self._min_interval = min_refresh_interval
        self._description = description
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()
        self._removal_listeners: list[Callable[[frozenset[str]], None]] = []
        self.fetch_count = 0

    @classmethod
    def from_url(
        cls, url: str, *, algorithms: Collection[str], timeout: float = 5.0, **kwargs: Any
    ) -> JWKSKeySource:
        """Keys served over HTTP(S); redirects are not followed (PyJWKClient)."""
        try:
            client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        except PyJWKClientError as exc:
            raise ConfigurationError(str(exc)) from exc
        return cls(client.fetch_data, algorithms=algorithms, description=url, **kwargs)

    @classmethod
    def from_file(
        cls, path: str | Path, *, algorithms: Collection[str], **kwargs: Any
    ) -> JWKSKeySource:
        """Keys from a JWKS file, re-read on refresh (the dev issuer's and tests' choice)."""
        file = Path(path)

        def _read() -> Mapping[str, Any]:
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise KeySourceUnavailable(f"cannot read JWKS file {file}: {exc}") from exc
            if not isinstance(data, dict):
                raise KeySourceUnavailable(f"JWKS file {file} is not a JSON object")
            return data

        return cls(_read, algorithms=algorithms, description=str(file), **kwargs)

    def lookup(self, kid: str) -> PyJWK | None:
        """Return the key for ``kid`` if we hold it. Never does I/O."""
        return self._keys.get(kid)

    def refresh_due(self, kid: str | None, now: float) -> bool:
        """Whether a fetch is due: keys stale, or ``kid`` unknown, and not rate limited."""
        if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
            return False
        if self._fetched_at is None or now - self._fetched_at >= self._max_age:
            return True
        return kid is not None and kid not in self._keys

    def refresh(self, now: float) -> None:
        """Fetch the JWKS and replace the keys; on failure keep the old ones.

        Safe to call from several threads: a second caller inside the rate limit returns
        without fetching.
        """
        with self._lock:
            if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
                return
            self._attempted_at = now
            self.fetch_count += 1
            try:
                keys = self._usable_keys(self._fetch())
            except (PyJWTError, KeySourceUnavailable, OSError, ValueError) as exc:
                logger.warning(
                    "JWKS refresh from %s failed; keeping %d cached keys: %s",
                    self._description,
                    len(self._keys),
                    exc,
                )
                return
            removed = frozenset(self._keys) - frozenset(keys)
            self._keys = keys
            self._fetched_at = now
        if removed:
            for listener in self._removal_listeners:
                listener(removed)

    def on_keys_removed(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Call ``listener(kids)`` whenever a refresh drops keys, so caches of what those
        keys verified can forget it at once (no per-request re-check needed)."""
        self._removal_listeners.append(listener)

    def _usable_keys(self, data: Mapping[str, Any]) -> dict[str, PyJWK]:
        try:
            jwk_set = PyJWKSet.from_dict(dict(data))
        except PyJWKSetError as exc:
            raise KeySourceUnavailable(f"JWKS has no usable keys: {exc}") from exc
        keys: dict[str, PyJWK] = {}
        for jwk in jwk_set.keys:
            alg = jwk.algorithm_name
            if (
                jwk.key_id
                and jwk.public_key_use in ("sig", None)
                and alg in self._algorithms
                and jwk.key_type == _KEY_TYPES[alg]
                and not _is_private(jwk)
            ):
                keys[jwk.key_id] = jwk
        if not keys:
            raise KeySourceUnavailable("JWKS has no signing keys for the pinned algorithms")
        return keys

    def __repr__(self) -> str:
        return f"JWKSKeySource({self._description!r}, kids={sorted(self._keys)})"


class RefreshNeeded(Exception):
    """Internal signal: the ``kid`` is unknown and a JWKS refresh is due; the caller
    refreshes (in a worker thread when on the event loop) and verifies once more."""

    def __init__(self, keys: JWKSKeySource) -> None:
        self.keys = keys


def select_key(
    keys: JWKSKeySource,
    header: Mapping[str, Any],
    *,
    algorithms: Collection[str],
    now: float,
    may_refresh: bool,
) -> PyJWK:
    """The key a JWS header names, after pinning its algorithm.

    Raises:
        InvalidToken: algorithm not allowed, ``kid`` missing or unknown, or the key's type
            does not match the algorithm (no algorithm confusion).
        RefreshNeeded: the ``kid`` is unknown and a refresh is allowed and due.
    """
    alg = header.get("alg")
    if alg not in algorithms:
        raise InvalidToken(f"algorithm {alg!r} is not allowed for this issuer")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise InvalidToken("kid header missing or invalid")
    key = keys.lookup(kid)
    if key is None:
        if may_refresh and keys.refresh_due(kid, now):
            raise RefreshNeeded(keys)
        raise InvalidToken("unknown signing key")
    if key.algorithm_name != alg:
        raise InvalidToken("key does not match the token's algorithm")
    return key


def _is_private(jwk: PyJWK) -> bool:
    # A JWKS must publish public keys; a private key there is a leak we refuse to use.
    return any(hasattr(jwk.key, attr) for attr in ("private_bytes", "private_numbers"))
