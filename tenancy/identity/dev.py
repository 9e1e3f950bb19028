"""A development token issuer: an Ed25519 key in a data directory and its JWKS file.

For the demo and tests only. It signs exactly like a real OIDC provider's access tokens
(``typ: at+jwt``, ``kid``, EdDSA), so the service verifies them through the same code
path as production tokens. The private key file is created with mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import PrincipalKind
from tenancy.errors import ConfigurationError
from tenancy.identity.jwk import public_jwk

DEV_ISSUER = "https://dev-issuer.tenancy.invalid"
KEY_FILE = "dev-issuer-ed25519.pem"
JWKS_FILE = "dev-issuer-jwks.json"


class DevIssuer:
    """Mints access tokens signed by a locally generated Ed25519 key."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str = DEV_ISSUER,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._key = private_key
        self.issuer = issuer
        self._clock = clock
        self.public_jwk = public_jwk(private_key)
        self.kid: str = self.public_jwk["kid"]

    @classmethod
    def generate(cls, **kwargs: Any) -> DevIssuer:
        """A development issuer with a new random Ed25519 key held only in memory (its
        tokens stop verifying once the process ends)."""
        return cls(Ed25519PrivateKey.generate(), **kwargs)

    @classmethod
    def load_or_create(cls, directory: str | Path, **kwargs: Any) -> DevIssuer:
        """Load the issuer key from ``directory``, creating it (0600) and the JWKS if absent."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        key_path = folder / KEY_FILE
        if key_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ConfigurationError(f"{key_path} is not an Ed25519 private key")
            issuer = cls(loaded, **kwargs)
        else:
            issuer = cls.generate(**kwargs)
            pem = issuer._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        issuer.write_jwks(folder / JWKS_FILE)
        return issuer

    def jwks(self) -> dict[str, Any]:
        """The JWKS holding the issuer's public key, for a verifier configured to trust it."""
        return {"keys": [dict(self.public_jwk)]}

    def write_jwks(self, path: str | Path) -> Path:
        """Write the JWKS atomically. Several processes open the issuer at once (the
        probe runs token commands in parallel), so each writes its own temporary file
        and an unchanged file is left alone."""
        target = Path(path)
        text = json.dumps(self.jwks(), indent=2)
        try:
            if target.read_text(encoding="utf-8") == text:
                return target
        except OSError:
            pass  # absent or unreadable: write it
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def mint(
        self,
        *,
        tenant_id: str,
        subject: str,
        audience: str,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        mfa: bool = False,
        ttl: int = 900,
        kind: PrincipalKind = PrincipalKind.USER,
        now: datetime | None = None,
        extra_claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Return a signed access token. ``extra_claims``/``headers`` exist for tests that
        need a malformed-but-signed token."""
        issued = int((now or self._clock.now()).timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "tid": tenant_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "jti": uuid.uuid4().hex,
            "scope": " ".join(sorted(set(scopes))),
            "roles": sorted(set(roles)),
            "amr": ["pwd", "otp", "mfa"] if mfa else ["pwd"],
        }
        if kind is not PrincipalKind.USER:
            claims["kind"] = kind.value
        claims.update(extra_claims or {})
        header = {"kid": self.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers=header)

    def __repr__(self) -> str:
        return f"DevIssuer(issuer={self.issuer!r}, kid={self.kid!r}, key=***)"
