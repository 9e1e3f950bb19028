"""Obtaining the identities' tokens, and the tampered credentials made from them.

Claims are read with PyJWT (``verify_signature=False``: the probe attacks, it does not
trust) and every forged token is encoded by PyJWT too: no hand-made JWT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tenancy.errors import ProbeConfigError
from tenancy.testing.probe.config import Issuer, TokenSource

WRONG_AUDIENCE = "https://wrong-audience.probe.invalid"
_COMMAND_TIMEOUT = 30


def obtain(source: TokenSource, *, name: str) -> str:
    """The token ``source`` yields; a :class:`ProbeConfigError` naming ``name`` if none."""
    if source.value is not None:
        token = source.value
    elif source.file is not None:
        try:
            token = source.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProbeConfigError(
                f"{name}: cannot read token file {source.file}: {exc.strerror}"
            ) from exc
    elif source.command is not None:
        token = _run(source.command, name)
    else:
        assert source.dev_issuer is not None
        token = _dev_issuer_token(source.dev_issuer, name)
    token = token.strip()
    if token.count(".") != 2:
        raise ProbeConfigError(f"{name}: the token source did not yield a JWT")
    return token


def claims(token: str) -> dict[str, Any]:
    """The token's claims, unverified (what the probe replays and tampers with)."""
    found: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return found


def header(token: str) -> dict[str, Any]:
    """The token's JOSE header, unverified (kept, ``alg`` aside, on the tampered tokens)."""
    found: dict[str, Any] = jwt.get_unverified_header(token)
    return found


def alg_none(token: str) -> str:
    """The same claims with ``alg: none`` and no signature."""
    kept = {k: v for k, v in header(token).items() if k not in ("alg", "typ")}
    typ = header(token).get("typ", "JWT")
    unsigned: Any = None  # PyJWT's "none" algorithm takes no key
    return jwt.encode(claims(token), unsigned, algorithm="none", headers={**kept, "typ": typ})


def forged_signature(token: str) -> str:
    """The same header and claims signed by a key nobody trusts (same ``kid``)."""
    original = header(token)
    alg = str(original.get("alg", "EdDSA"))
    key: Any
    if alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
        key = ec.generate_private_key(curve.get(alg, ec.SECP256R1()))
    elif alg.startswith(("RS", "PS")):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:  # HS*: a secret nobody shares
        key = os.urandom(32)
    kept = {k: v for k, v in original.items() if k != "alg"}
    return jwt.encode(claims(token), key, algorithm=alg, headers=kept)


class Resigner:
    """Re-signs a token's claims with the issuer's own key, changing some of them."""

    def __init__(self, issuer: Issuer) -> None:
        path = issuer.private_key
        if issuer.dev_data_dir is not None:
            from tenancy.identity.dev import KEY_FILE

            path = issuer.dev_data_dir / KEY_FILE
        assert path is not None
        try:
            pem = Path(path).read_bytes()
            self._key = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ProbeConfigError(f"issuer: cannot load the private key {path}: {exc}") from exc
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            self._alg = "EdDSA"
        elif isinstance(self._key, ec.EllipticCurvePrivateKey):
            self._alg = {256: "ES256", 384: "ES384", 521: "ES512"}[self._key.curve.key_size]
        elif isinstance(self._key, rsa.RSAPrivateKey):
            self._alg = "RS256"
        else:
            raise ProbeConfigError(f"issuer: unsupported key type in {path}")

    def expired(self, token: str) -> str:
        """The same claims, validly signed by the issuer's key, with ``exp`` an hour in the
        past (``iat`` and ``nbf`` two hours back): a service that serves it does not check
        expiry."""
        now = int(time.time())
        return self._sign(token, iat=now - 7200, nbf=now - 7200, exp=now - 3600)

    def wrong_audience(self, token: str) -> str:
        """The same claims, validly signed by the issuer's key, with ``aud`` set to an
        audience no service has: a service that serves it does not check the audience."""
        return self._sign(token, aud=WRONG_AUDIENCE)

    def _sign(self, token: str, **changes: Any) -> str:
        kept = {k: v for k, v in header(token).items() if k != "alg"}
        return jwt.encode(
            {**claims(token), **changes},
            self._key,  # type: ignore[arg-type]
            algorithm=self._alg,
            headers=kept,
        )


def _run(command: tuple[str, ...], name: str) -> str:
    program = command[0]
    beside = Path(sys.executable).parent / program
    if shutil.which(program) is None and "/" not in program and beside.exists():
        command = (str(beside), *command[1:])
    try:
        # The operator's own configured command, run without a shell.
        done = subprocess.run(  # noqa: S603
            list(command),
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeConfigError(f"{name}: token command failed: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeConfigError(f"{name}: token command exited {done.returncode}: {last}")
    return done.stdout


def _dev_issuer_token(spec: dict[str, Any] | Any, name: str) -> str:
    from tenancy.context import PrincipalKind
    from tenancy.identity.dev import KEY_FILE, DevIssuer

    try:
        folder = Path(spec["data_dir"])
        if not (folder / KEY_FILE).exists():
            raise ProbeConfigError(f"{name}: no dev issuer key in {folder}")
        issuer = DevIssuer.load_or_create(folder)
        extra = {"trusted_device": True} if spec.get("trusted_device") else None
        return issuer.mint(
            tenant_id=str(spec["tenant_id"]),
            subject=str(spec["sub"]),
            audience=str(spec["audience"]),
            roles=spec.get("roles", ()),
            scopes=spec.get("scopes", ()),
            mfa=bool(spec.get("mfa", False)),
            ttl=int(spec.get("ttl", 900)),
            kind=PrincipalKind(spec.get("kind", "user")),
            extra_claims=extra,
        )
    except KeyError as exc:
        raise ProbeConfigError(f"{name}: dev_issuer needs {exc.args[0]!r}") from exc
    except ValueError as exc:
        raise ProbeConfigError(f"{name}: dev_issuer: {exc}") from exc
