"""Every way a bearer token must be refused, and the reason it is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tenancy.errors import ConfigurationError, InvalidToken
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tests.unit.identity.conftest import AUD, NOW

TID = str(uuid.uuid4())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    base = {"iss": DEV_ISSUER, "aud": AUD, "sub": "alice", "tid": TID, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(dev: DevIssuer, payload: dict[str, Any], **headers: Any) -> str:
    """Sign any JSON payload with the real issuer key (PyJWS, so no claim type checks)."""
    header = {"kid": dev.kid, "typ": "at+jwt", **headers}
    return jwt.api_jws.encode(
        json.dumps(payload).encode(), dev._key, algorithm="EdDSA", headers=header
    )


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    return info.value.reason


def test_well_formed_token_is_accepted(verifier: TokenVerifier, dev: DevIssuer) -> None:
    verified = verifier.verify(sign(dev, claims()))
    assert verified.principal.tenant_id == TID
    assert verified.principal.subject == "alice"


def test_alg_none_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    token = forge({"alg": "none", "typ": "at+jwt", "kid": dev.kid}, claims())
    assert "algorithm" in refused(verifier, token)


def test_hs256_signed_with_the_public_key_is_refused(
    verifier: TokenVerifier, dev: DevIssuer
) -> None:
    # Algorithm confusion: the attacker HMACs with the issuer's public key as the secret.
    public = dev._key.public_key()
    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        json.dumps(dev.public_jwk).encode(),
    ]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": dev.kid}
    for secret in secrets:
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert "algorithm" in refused(verifier, f"{signing_input}.{b64(mac)}")


def test_unknown_kid_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    assert "unknown signing key" in refused(verifier, sign(dev, claims(), kid="other-kid"))


def test_token_signed_by_another_key_with_our_kid_is_refused(
    verifier: TokenVerifier, dev: DevIssuer
) -> None:
    impostor = DevIssuer.generate()
    token = jwt.encode(
        claims(), impostor._key, algorithm="EdDSA", headers={"kid": dev.kid, "typ": "at+jwt"}
    )
    assert "Signature" in refused(verifier, token)


def test_wrong_issuer_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    assert refused(verifier, sign(dev, claims(iss="https://evil.example"))) == "untrusted issuer"


@pytest.mark.parametrize(
    "iss", [DEV_ISSUER + ".evil.example", DEV_ISSUER + "/", DEV_ISSUER[:-1], DEV_ISSUER.upper()]
)
def test_issuer_that_only_prefix_matches_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, iss: str
) -> None:
    assert refused(verifier, sign(dev, claims(iss=iss))) == "untrusted issuer"


def test_issuer_as_list_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    assert refused(verifier, sign(dev, claims(iss=[DEV_ISSUER]))) == "untrusted issuer"


@pytest.mark.parametrize("aud", ["billing", [AUD, "billing"], [AUD], "worklogs2", None])
def test_wrong_or_ambiguous_audience_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, aud: Any
) -> None:
    refused(verifier, sign(dev, claims(aud=aud)))


def test_expired_token_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    now = int(NOW.timestamp())
    assert "expired" in refused(verifier, sign(dev, claims(iat=now - 600, exp=now - 31)))


def test_expiry_within_leeway_is_accepted(verifier: TokenVerifier, dev: DevIssuer) -> None:
    now = int(NOW.timestamp())
    verifier.verify(sign(dev, claims(iat=now - 600, exp=now - 10)))


def test_nbf_in_the_future_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    now = int(NOW.timestamp())
    assert "not yet valid" in refused(verifier, sign(dev, claims(nbf=now + 120)))


def test_iat_in_the_future_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    now = int(NOW.timestamp())
    assert "future" in refused(verifier, sign(dev, claims(iat=now + 120, exp=now + 600)))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "tid", "aud", "iss"])
def test_token_without_a_required_claim_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, missing: str
) -> None:
    payload = claims()
    del payload[missing]
    refused(verifier, sign(dev, payload))


@pytest.mark.parametrize("exp", ["9999999999", True, None, float("inf")])
def test_exp_that_is_not_a_numeric_date_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, exp: Any
) -> None:
    payload = claims()
    payload["exp"] = exp
    if exp == float("inf"):
        # json cannot carry inf; PyJWT would refuse to encode it. Use a huge literal.
        payload["exp"] = 10**400
    refused(verifier, sign(dev, payload))


@pytest.mark.parametrize("tid", ["acme", "", 42, TID.upper(), "{" + TID + "}"])
def test_malformed_tenant_claim_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, tid: Any
) -> None:
    assert "tid" in refused(verifier, sign(dev, claims(tid=tid)))


@pytest.mark.parametrize("typ", ["JWT", "id_token+jwt", "refresh+jwt", "at+jwt+x", None])
def test_token_that_is_not_an_access_token_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, typ: Any
) -> None:
    header = {"kid": dev.kid, "typ": typ}
    token = jwt.encode(claims(), dev._key, algorithm="EdDSA", headers=header)
    if typ is None:
        # PyJWT adds typ=JWT by default; remove it to test a header without typ.
        token = jwt.encode(
            claims(), dev._key, algorithm="EdDSA", headers={"kid": dev.kid, "typ": None}
        )
    assert "access token" in refused(verifier, token)


def test_application_at_jwt_media_type_is_accepted(verifier: TokenVerifier, dev: DevIssuer) -> None:
    verifier.verify(sign(dev, claims(), typ="application/AT+JWT"))


def test_oversized_token_is_refused_before_parsing(verifier: TokenVerifier, dev: DevIssuer) -> None:
    token = sign(dev, claims(padding="x" * 9000))
    assert "larger than" in refused(verifier, token)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9.!!!.sig",
        b64(b"{not json") + "." + b64(b"{}") + ".",
        b64(b'{"alg":"EdDSA"}') + "." + b64(b"[1,2") + "." + b64(b"sig"),
        b64(b'["alg"]') + "." + b64(b"{}") + "." + b64(b"sig"),
        "",
    ],
)
def test_malformed_token_is_refused(verifier: TokenVerifier, token: str) -> None:
    refused(verifier, token)


def test_kind_the_issuer_may_not_assert_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    assert "kind" in refused(verifier, sign(dev, claims(kind="support")))


def test_lifetime_beyond_the_maximum_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    now = int(NOW.timestamp())
    assert "lifetime" in refused(verifier, sign(dev, claims(exp=now + 3 * 24 * 3600)))


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["EdDSA", "HS512"], []])
def test_issuer_with_symmetric_or_no_algorithm_cannot_be_configured(
    tmp_path: Path, dev: DevIssuer, algorithms: list[str]
) -> None:
    with pytest.raises(ConfigurationError):
        keys = JWKSKeySource.from_file(tmp_path / "dev-issuer-jwks.json", algorithms=["EdDSA"])
        trusted_issuer(DEV_ISSUER, audience=AUD, keys=keys, algorithms=algorithms)
