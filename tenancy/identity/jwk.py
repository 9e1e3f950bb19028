"""Public JWKs of our own signing keys, named by their RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from tenancy.errors import ConfigurationError

SigningPrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey

# RFC 7638 §3.2: the members that identify a key, per key type.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}


def algorithm_of(key: SigningPrivateKey) -> str:
    """The JWS algorithm a private key signs with; only Ed25519 and P-256 qualify."""
    if isinstance(key, Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ConfigurationError("signing keys must be Ed25519 (EdDSA) or P-256 (ES256)")


def generate(algorithm: str) -> SigningPrivateKey:
    """A fresh private key for ``algorithm`` (``EdDSA`` or ``ES256``)."""
    if algorithm == "EdDSA":
        return Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ConfigurationError(f"unsupported signing algorithm {algorithm!r}")


def public_jwk(key: SigningPrivateKey) -> dict[str, Any]:
    """The public half as a JWK with ``kid`` (its thumbprint), ``alg`` and ``use``."""
    algorithm = algorithm_of(key)
    jwk: dict[str, Any]
    if algorithm == "EdDSA":
        assert isinstance(key, Ed25519PrivateKey)
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": thumbprint(jwk), "alg": algorithm, "use": "sig"}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 over the key type's required members."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
