"""Bundle signatures as OPA makes and checks them: the keys it accepts, the JWS over every
member's digest, and the check of the members against it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenancy.authz.archive.digest import HASH_ALGORITHM, file_digest, load_json
from tenancy.authz.archive.layout import SIGNATURES, invalid
from tenancy.errors import ConfigurationError

ISSUER = "tenancy"

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

_SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_VerificationKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


# -- signing --------------------------------------------------------------------------------


def signature(
    files: Mapping[str, bytes],
    signing_key: bytes,
    *,
    key_id: str,
    scope: str | None,
    issued_at: int | None,
) -> str:
    """The compact JWS over ``files`` by the PEM ``signing_key``, for ``.signatures.json``.

    Raises:
        ConfigurationError: the key is not a supported, unencrypted PEM private key, or
            ``key_id`` is empty.
    """
    key, algorithm = _signing_key(signing_key)
    if not key_id:
        raise ConfigurationError("a signed bundle needs a key id")
    iat = int(time.time()) if issued_at is None else issued_at
    claims = _signature_claims(files, issued_at=iat, scope=scope)
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": key_id})


def _signature_claims(
    files: Mapping[str, bytes], *, issued_at: int, scope: str | None
) -> dict[str, Any]:
    """The JWS payload OPA verifies: a digest of every file, then who signed when."""
    claims: dict[str, Any] = {
        "files": [
            {"name": name, "hash": file_digest(name, content), "algorithm": HASH_ALGORITHM}
            for name, content in sorted(files.items())
        ],
        "iat": issued_at,
        "iss": ISSUER,
    }
    if scope:
        claims["scope"] = scope
    return claims


# -- verifying ------------------------------------------------------------------------------


def verify(
    members: Mapping[str, bytes],
    key: tuple[_VerificationKey, str],
    *,
    key_id: str | None,
    scope: str | None,
) -> None:
    """OPA's check of a signed bundle: one JWS by ``key``; then every member (but the
    signatures) listed with its digest, and every listed file present."""
    if SIGNATURES not in members:
        raise invalid("signature missing: no .signatures.json, and a key was given")
    token = _single_token(members[SIGNATURES])
    header, claims = _verified(token, key)
    if key_id is not None and header.get("kid") != key_id:
        raise invalid(f"signature key id {header.get('kid')!r} is not {key_id!r}")
    if (claims.get("scope") or "") != (scope or ""):
        raise invalid("signature scope mismatch")
    _check_files(members, _signed_files(claims))


def _single_token(content: bytes) -> str:
    document = load_json(SIGNATURES, content)
    if not isinstance(document, dict) or document.get("plugin"):
        raise invalid("signature file is not a plain .signatures.json (or names a plugin)")
    tokens = document.get("signatures")
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise invalid("signature: .signatures.json must hold exactly one JWS")
    return tokens[0]


def _verified(
    token: str, key: tuple[_VerificationKey, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token`` once its signature checks out: a JWS check
    only, as OPA makes (no expiry or audience)."""
    public_key, algorithm = key
    try:
        decoded = jwt.PyJWS().decode_complete(token, public_key, algorithms=[algorithm])
    except jwt.PyJWTError as exc:
        raise invalid(f"signature does not verify ({exc})") from exc
    header: dict[str, Any] = decoded["header"]
    claims = load_json("signature payload", decoded["payload"])
    if not isinstance(claims, dict):
        raise invalid("signature payload is not a JSON object")
    for claim in ("scope", "iss", "keyid"):
        if claims.get(claim) is not None and not isinstance(claims[claim], str):
            raise invalid(f"signature claim {claim} is not a string")
    iat = claims.get("iat")
    if iat is not None and (isinstance(iat, bool) or not isinstance(iat, int)):
        raise invalid("signature claim iat is not an integer")
    return header, claims


def _signed_files(claims: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The signature's file list: name -> (algorithm, hex digest)."""
    entries = claims.get("files")
    if not isinstance(entries, list):
        raise invalid("signature lists no files")
    signed: dict[str, tuple[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise invalid("signature file entry is not an object")
        name, algorithm, digest = (entry.get(k) for k in ("name", "algorithm", "hash"))
        if not (isinstance(name, str) and isinstance(algorithm, str) and isinstance(digest, str)):
            raise invalid("signature file entry lacks a string name, hash or algorithm")
        if name in signed:
            raise invalid(f"signature lists {name} twice")
        signed[name] = (algorithm, digest)
    return signed


def _check_files(members: Mapping[str, bytes], signed: dict[str, tuple[str, str]]) -> None:
    for name, content in members.items():
        if name == SIGNATURES:
            continue
        if name not in signed:
            raise invalid(f"file {name} not in the signature")
        algorithm, digest = signed.pop(name)
        if algorithm != HASH_ALGORITHM:
            raise invalid(f"{name}: hashing algorithm {algorithm!r} (only {HASH_ALGORITHM})")
        try:
            expected = bytes.fromhex(digest)
        except ValueError as exc:
            raise invalid(f"{name}: the signed digest is not hex") from exc
        if bytes.fromhex(file_digest(name, content)) != expected:
            raise invalid(f"{name}: digest mismatch")
    if signed:
        raise invalid(f"{', '.join(sorted(signed))} listed in the signature but missing")


# -- keys ------------------------------------------------------------------------------------


def _signing_key(pem: bytes) -> tuple[_SigningKey, str]:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError("the signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise _unsupported_key("signing")
    return key, _algorithm(key.public_key(), "signing")


def load_verification_key(pem: bytes) -> tuple[_VerificationKey, str]:
    """The public key in ``pem`` (a key or a certificate) and the JWS algorithm for it.

    Raises:
        ConfigurationError: not a PEM public key or certificate, or a key type OPA does
            not verify with.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ConfigurationError(
                "the verification key is not a PEM public key or certificate"
            ) from exc
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _unsupported_key("verification")
    return key, _algorithm(key, "verification")


def _algorithm(key: _VerificationKey, role: str) -> str:
    """The one JWS algorithm OPA verifies with for this key type."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigurationError(f"the {role} key is RSA of {key.key_size} bits (< 2048)")
        return "RS256"
    algorithm = _EC_ALGORITHMS.get(key.curve.name)
    if algorithm is None:
        raise _unsupported_key(role)
    return algorithm


def _unsupported_key(role: str) -> ConfigurationError:
    return ConfigurationError(
        f"the {role} key type is not supported: OPA verifies bundle signatures made with "
        "RSA (RS256) or EC P-256/P-384/P-521 (ES256/ES384/ES512) keys"
    )
