"""A service's own signing keys for context tokens, and the JWKS that publishes them.

Rotation never breaks a token in flight or a verifier with a cached JWKS:

- a **next** key is published before it signs anything, so verifiers that refresh their
  JWKS on schedule (``JWKSKeySource(max_age=...)``) already hold it when it takes over;
- ``rotate()`` promotes next to **active**, creates a new next, and keeps the old active
  key published as **retired** for ``retain`` seconds (longer than any token it signed);
- private keys are written to one file with mode 0600 and never appear in ``repr``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import ConfigurationError
from tenancy.identity.jwk import SigningPrivateKey, algorithm_of, generate, public_jwk

KeyState = Literal["active", "next", "retired"]
KEYS_FILE = "signing-keys.json"
JWKS_FILE = "jwks.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key with its ``kid`` and rotation state."""

    private_key: SigningPrivateKey = field(repr=False)
    state: KeyState
    retired_at: float | None = None
    jwk: dict[str, Any] = field(init=False, repr=False, compare=False)
    # Both fixed by the key: worked out once, not on every token minted.
    _kid: str = field(init=False, repr=False, compare=False)
    _algorithm: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        jwk = public_jwk(self.private_key)
        object.__setattr__(self, "jwk", jwk)
        object.__setattr__(self, "_kid", str(jwk["kid"]))
        object.__setattr__(self, "_algorithm", algorithm_of(self.private_key))

    @property
    def kid(self) -> str:
        """The key's ``kid``, derived from its public key (see ``public_jwk``), as published
        in the JWKS and stamped on the tokens it signs."""
        return self._kid

    @property
    def algorithm(self) -> str:
        """The JWS algorithm this key signs with, fixed by its type."""
        return self._algorithm


class ServiceKeyring:
    """The signing keys of one service (``service`` is the ``iss`` of its tokens).

    Args:
        service: the service's name, as downstream verifiers are configured to trust it.
        keys: exactly one active key, at most one next key, any retired keys.
        retain: seconds a retired key stays published (default one hour, longer than
            any context or message token lives).
    """

    def __init__(
        self,
        service: str,
        keys: Sequence[SigningKey],
        *,
        retain: float = 3600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not service or not service.isascii() or any(c.isspace() for c in service):
            raise ConfigurationError("a service name must be non-empty ASCII without spaces")
        active = [k for k in keys if k.state == "active"]
        if len(active) != 1 or sum(k.state == "next" for k in keys) > 1:
            raise ConfigurationError("a keyring needs one active key and at most one next key")
        if len({k.algorithm for k in keys}) != 1:
            raise ConfigurationError("all keys of a keyring must use one algorithm")
        self.service = service
        self._keys = list(keys)
        self._active = active[0]
        self._retain = retain
        self._clock = clock
        self._path: Path | None = None

    @classmethod
    def generate(cls, service: str, *, algorithm: str = "EdDSA", **kwargs: Any) -> ServiceKeyring:
        """A new keyring with an active and a pre-published next key."""
        keys = [SigningKey(generate(algorithm), "active"), SigningKey(generate(algorithm), "next")]
        return cls(service, keys, **kwargs)

    @classmethod
    def load_or_create(
        cls, directory: str | Path, service: str, *, algorithm: str = "EdDSA", **kwargs: Any
    ) -> ServiceKeyring:
        """Open the keyring stored in ``directory`` (created 0700 with a new keyring and its
        public ``jwks.json`` if absent).

        Safe when several processes (workers, replicas on one volume) open it at once:
        the first to create it wins and the others load what it wrote.
        """
        folder = Path(directory)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / KEYS_FILE
        if not path.exists():
            fresh = cls.generate(service, algorithm=algorithm, **kwargs)
            fresh._path = path
            if fresh._publish(create=True):
                return fresh
        ring = cls(service, _read_keys(path, service), **kwargs)
        ring._path = path
        return ring

    @property
    def active(self) -> SigningKey:
        """The one key that signs new tokens now."""
        return self._active

    @property
    def algorithm(self) -> str:
        """The JWS algorithm of every key in the ring (construction refuses a mix)."""
        return self.active.algorithm

    def jwks(self, *, now: float | None = None) -> dict[str, Any]:
        """The public keys verifiers need: active, next, and retired ones still in use."""
        self._forget_expired(self._clock.timestamp() if now is None else now)
        return {"keys": [dict(k.jwk) for k in self._keys]}

    def rotate(self) -> SigningKey:
        """Promote the next key to active; returns the new active key."""
        now = self._clock.timestamp()
        algorithm = self.algorithm
        rotated: list[SigningKey] = []
        promoted = False
        for key in self._keys:
            if key.state == "active":
                rotated.append(replace(key, state="retired", retired_at=now))
            elif key.state == "next":
                rotated.append(replace(key, state="active"))
                promoted = True
            else:
                rotated.append(key)
        if not promoted:
            rotated.append(SigningKey(generate(algorithm), "active"))
        rotated.append(SigningKey(generate(algorithm), "next"))
        self._keys = rotated
        self._active = next(k for k in rotated if k.state == "active")
        self._forget_expired(now)
        self.save()
        return self.active

    def save(self) -> None:
        """Persist private keys (0600) and the public JWKS, if the keyring has a home."""
        self._publish(create=False)

    def _publish(self, *, create: bool) -> bool:
        """Write the key file (only if absent when ``create``), then the JWKS; returns
        False if ``create`` lost the race to another process."""
        if self._path is None:
            return True
        entries = [
            {
                "state": k.state,
                "retired_at": k.retired_at,
                "pem": k.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
            }
            for k in self._keys
        ]
        document = {"version": FORMAT_VERSION, "service": self.service, "keys": entries}
        if not _write_atomically(self._path, json.dumps(document), mode=0o600, exclusive=create):
            return False
        _write_atomically(
            self._path.with_name(JWKS_FILE),
            json.dumps(self.jwks(), indent=2),
            mode=0o644,
            exclusive=False,
        )
        return True

    @property
    def jwks_path(self) -> Path | None:
        """Where the public ``jwks.json`` is written, or None for a keyring held only in
        memory."""
        return None if self._path is None else self._path.with_name(JWKS_FILE)

    def _forget_expired(self, now: float) -> None:
        self._keys = [
            k for k in self._keys if k.retired_at is None or now - k.retired_at < self._retain
        ]

    def __repr__(self) -> str:
        kids = ", ".join(f"{k.state}:{k.kid}" for k in self._keys)
        return f"ServiceKeyring({self.service!r}, [{kids}], private keys=***)"


def _read_keys(path: Path, service: str) -> list[SigningKey]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            raise ConfigurationError(f"{path}: unsupported keyring format")
        # Another service's keyring must never sign this service's tokens.
        if document.get("service") != service:
            raise ConfigurationError(f"{path} is the keyring of another service, not {service!r}")
        keys = []
        for entry in document["keys"]:
            loaded = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
            algorithm_of(loaded)  # type: ignore[arg-type]  # refuses other key types
            keys.append(SigningKey(loaded, entry["state"], entry.get("retired_at")))  # type: ignore[arg-type]
        return keys
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cannot read keyring {path}: {exc}") from exc


def _write_atomically(path: Path, text: str, *, mode: int, exclusive: bool) -> bool:
    """Write ``text`` to a unique temporary file created with ``mode``, then move it into
    place: replacing ``path``, or, if ``exclusive``, only if ``path`` does not exist yet
    (returns False then). Readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic "create if absent"
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
