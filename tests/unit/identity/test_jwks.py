"""JWKS handling against a real HTTP endpoint: rotation, rate limits, outages, key types."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tenancy.clock import FrozenClock
from tenancy.errors import InvalidToken
from tenancy.identity import DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tests.support.jwks_server import JWKSServer

ISS = "https://idp.example.test"
AUD = "worklogs"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    with JWKSServer() as srv:
        yield srv


def make_verifier(
    server: JWKSServer, clock: FrozenClock, algorithms: list[str], **key_kwargs: Any
) -> tuple[TokenVerifier, JWKSKeySource]:
    keys = JWKSKeySource.from_url(server.url, algorithms=algorithms, **key_kwargs)
    verifier = TokenVerifier(
        [trusted_issuer(ISS, audience=AUD, keys=keys, algorithms=algorithms)], clock=clock
    )
    return verifier, keys


def mint(issuer: DevIssuer, clock: FrozenClock, **claims: Any) -> str:
    return issuer.mint(
        tenant_id=str(uuid.uuid4()), subject="alice", audience=AUD, now=clock.now(), **claims
    )


def test_kid_removed_from_jwks_after_rotation_stops_verifying(
    server: JWKSServer, clock: FrozenClock
) -> None:
    old, new = DevIssuer.generate(issuer=ISS), DevIssuer.generate(issuer=ISS)
    server.jwks = {"keys": [old.public_jwk]}
    verifier, _ = make_verifier(server, clock, ["EdDSA"], max_age=300, min_refresh_interval=30)
    old_token = mint(old, clock)
    verifier.verify(old_token)  # also cached from here on

    # Rotation: the IdP publishes only the new key. After max_age we refetch.
    server.jwks = {"keys": [new.public_jwk]}
    clock.advance(301)
    verifier.verify(mint(new, clock))
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(old_token)


def test_new_kid_triggers_a_refresh(server: JWKSServer, clock: FrozenClock) -> None:
    old, new = DevIssuer.generate(issuer=ISS), DevIssuer.generate(issuer=ISS)
    server.jwks = {"keys": [old.public_jwk]}
    verifier, _ = make_verifier(server, clock, ["EdDSA"], min_refresh_interval=30)
    verifier.verify(mint(old, clock))
    server.jwks = {"keys": [old.public_jwk, new.public_jwk]}
    clock.advance(31)
    verifier.verify(mint(new, clock))
    assert server.requests == 2


def test_random_kids_cannot_force_unbounded_fetches(server: JWKSServer, clock: FrozenClock) -> None:
    real = DevIssuer.generate(issuer=ISS)
    server.jwks = {"keys": [real.public_jwk]}
    verifier, keys = make_verifier(server, clock, ["EdDSA"], min_refresh_interval=30)
    verifier.verify(mint(real, clock))
    for i in range(200):
        token = jwt.encode(
            {"iss": ISS},
            real._key,
            algorithm="EdDSA",
            headers={"kid": f"random-{i}", "typ": "at+jwt"},
        )
        with pytest.raises(InvalidToken, match="unknown signing key"):
            verifier.verify(token)
        clock.advance(0.5)  # 200 tokens over 100 s: at most one fetch per 30 s
    assert server.requests <= 1 + 100 // 30 + 1
    assert keys.fetch_count == server.requests


def test_failed_fetch_keeps_the_cached_keys(server: JWKSServer, clock: FrozenClock) -> None:
    issuer = DevIssuer.generate(issuer=ISS)
    server.jwks = {"keys": [issuer.public_jwk]}
    verifier, _ = make_verifier(server, clock, ["EdDSA"], max_age=60, min_refresh_interval=10)
    verifier.verify(mint(issuer, clock))
    server.fail = True
    clock.advance(61)  # stale: the next unknown token triggers a refresh, which fails
    with pytest.raises(InvalidToken):
        verifier.verify(mint(issuer, clock, extra_claims={"iss": ISS}, headers={"kid": "x"}))
    assert server.requests == 2
    verifier.verify(mint(issuer, clock))  # a fresh token with the cached key still verifies


def test_unreachable_jwks_refuses_tokens_without_crashing(clock: FrozenClock) -> None:
    keys = JWKSKeySource.from_url("http://127.0.0.1:9/jwks", algorithms=["EdDSA"], timeout=1)
    verifier = TokenVerifier(
        [trusted_issuer(ISS, audience=AUD, keys=keys, algorithms=["EdDSA"])], clock=clock
    )
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(mint(DevIssuer.generate(issuer=ISS), clock))


def test_symmetric_key_in_jwks_is_never_used(server: JWKSServer, clock: FrozenClock) -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    oct_jwk = json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(secret))
    server.jwks = {
        "keys": [
            {**oct_jwk, "kid": "hmac", "alg": "HS256"},
            DevIssuer.generate(issuer=ISS).public_jwk,
        ]
    }
    verifier, keys = make_verifier(server, clock, ["EdDSA"])
    token = jwt.encode(
        {
            "iss": ISS,
            "aud": AUD,
            "sub": "a",
            "tid": str(uuid.uuid4()),
            "iat": int(NOW.timestamp()),
            "exp": int(NOW.timestamp()) + 60,
        },
        secret,
        algorithm="HS256",
        headers={"kid": "hmac", "typ": "at+jwt"},
    )
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert keys.lookup("hmac") is None


def test_private_key_published_in_jwks_is_not_used(server: JWKSServer, clock: FrozenClock) -> None:
    issuer = DevIssuer.generate(issuer=ISS)
    private_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(issuer._key))
    server.jwks = {"keys": [{**private_jwk, "kid": issuer.kid, "alg": "EdDSA"}]}
    verifier, keys = make_verifier(server, clock, ["EdDSA"])
    with pytest.raises(InvalidToken):
        verifier.verify(mint(issuer, clock))
    assert keys.lookup(issuer.kid) is None


def test_key_of_another_algorithm_is_not_used(server: JWKSServer, clock: FrozenClock) -> None:
    # An RS256 key under the kid, while the issuer is pinned to EdDSA only.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    server.jwks = {"keys": [{**rsa_jwk, "kid": "r1", "alg": "RS256"}]}
    keys = JWKSKeySource.from_url(server.url, algorithms=["EdDSA"])
    keys.refresh(NOW.timestamp())
    assert keys.lookup("r1") is None


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_es256_and_rs256_issuers_verify(server: JWKSServer, clock: FrozenClock, alg: str) -> None:
    if alg == "ES256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
        public_jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    server.jwks = {"keys": [{**public_jwk, "kid": "k1", "alg": alg, "use": "sig"}]}
    verifier, _ = make_verifier(server, clock, [alg])
    now = int(NOW.timestamp())
    tid = str(uuid.uuid4())
    token = jwt.encode(
        {"iss": ISS, "aud": AUD, "sub": "s", "tid": tid, "iat": now, "exp": now + 60},
        private,
        algorithm=alg,
        headers={"kid": "k1", "typ": "at+jwt"},
    )
    assert verifier.verify(token).principal.tenant_id == tid
    # The same key under the wrong algorithm name is refused.
    other = "RS256" if alg == "ES256" else "ES256"
    forged = token.split(".")
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": other, "kid": "k1", "typ": "at+jwt"}).encode()
    ).decode()
    with pytest.raises(InvalidToken):
        verifier.verify(".".join([header, forged[1], forged[2]]))


@pytest.mark.anyio
async def test_async_verification_fetches_keys_off_the_event_loop(
    server: JWKSServer, clock: FrozenClock
) -> None:
    issuer = DevIssuer.generate(issuer=ISS)
    server.jwks = {"keys": [issuer.public_jwk]}
    verifier, _ = make_verifier(server, clock, ["EdDSA"])
    verified = await verifier.verify_async(mint(issuer, clock))
    assert verified.principal.subject == "alice"
    assert server.requests == 1


def test_non_http_jwks_url_is_refused_at_construction() -> None:
    from tenancy.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        JWKSKeySource.from_url("file:///etc/passwd", algorithms=["EdDSA"])
