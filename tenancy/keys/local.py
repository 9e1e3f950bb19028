"""Platform-managed KEKs in a local key file, each sealed by a root key.

The root key (32 bytes) comes from the environment (``TENANCY_ROOT_KEY``, base64) or a
file with mode 0600; KEKs are generated here and written only wrapped by it (AES-256-GCM,
associated data naming the key id and version). Nothing is written in the clear. A
data key is wrapped under a KEK version with the wrap context as associated data.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenancy.errors import (
    ConfigurationError,
    DecryptionFailed,
    KeyDestroyed,
    KeyManagementError,
    KeyUnavailable,
)
from tenancy.keys.provider import KeyInfo, KeyRef, context_bytes
from tenancy.secretfile import load_or_create_secret

ROOT_KEY_ENV = "TENANCY_ROOT_KEY"
NAME = "local"


class RootKey:
    """The key that seals every local KEK; ``repr`` never shows it."""

    def __init__(self, material: bytes) -> None:
        if len(material) != 32:
            raise ConfigurationError("the root key must be 32 bytes")
        self._aead = AESGCM(material)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RootKey:
        """The root key from ``TENANCY_ROOT_KEY`` (base64 of 32 bytes) in ``env`` (default:
        ``os.environ``).

        Raises:
            ConfigurationError: the variable is unset or empty, not base64, or not 32 bytes.
        """
        value = (os.environ if env is None else env).get(ROOT_KEY_ENV)
        if not value:
            raise ConfigurationError(f"{ROOT_KEY_ENV} is not set")
        try:
            return cls(base64.b64decode(value, validate=True))
        except ValueError as exc:
            raise ConfigurationError(f"{ROOT_KEY_ENV} is not base64") from exc

    @classmethod
    def load_or_create(cls, path: str | Path) -> RootKey:
        """Read the root key file, or create it (0600) with a fresh random key."""
        return cls(load_or_create_secret(path))

    def seal(self, material: bytes, aad: bytes) -> bytes:
        """Encrypt ``material`` with AES-256-GCM under a fresh random nonce (returned in
        front), bound to ``aad``: the sealed bytes open only with the same associated data."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, material, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """Decrypt what ``seal`` produced with the same ``aad``.

        Raises:
            ConfigurationError: the bytes do not open: another root key, another ``aad`` (a
                KEK entry moved to another key id or version) or tampering.
        """
        if len(sealed) < 12 + 16:
            raise ConfigurationError("a stored KEK is truncated")
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], aad)
        except InvalidTag as exc:
            raise ConfigurationError("a stored KEK does not open under this root key") from exc

    def __repr__(self) -> str:
        return "RootKey(***)"


class LocalKeyProvider:
    """KEKs in a JSON file (``path``), sealed by ``root``; one KEK per tenant, versioned.

    Several processes share the file (services, replicas on one host, the CLI). Every
    change takes an exclusive ``flock`` on ``<path>.lock``, re-reads the file, applies
    itself and replaces the file, so no writer can lose another's change, and an object
    opened before a shred can never write the destroyed key back. Every read re-reads
    the file under a shared lock: a key destroyed or disabled by another process is
    never used from memory. (Reads happen on data-key cache misses only.)
    """

    def __init__(self, path: str | Path, *, root: RootKey, name: str = NAME) -> None:
        self.name = name
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._root = root
        self._thread_lock = threading.RLock()
        self._read()  # fail at construction on an unreadable file

    def create_key(self, *, tenant_id: str) -> KeyRef:
        """Generate a new KEK (version 1) for ``tenant_id`` under a fresh random key id,
        write it sealed by the root key and return its ref."""
        key_id = f"kek-{tenant_id}-{os.urandom(4).hex()}"
        with self._changing() as keys:
            keys[key_id] = {
                "tenant_id": tenant_id,
                "enabled": True,
                "destroyed": False,
                "current": "1",
                "versions": {"1": self._seal(key_id, "1")},
            }
        return KeyRef(self.name, key_id, "1")

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        """Wrap ``dek`` under the KEK's current version (AES-256-GCM, the canonical
        ``context`` as associated data); ``key.version`` is ignored. Returns the blob and
        the versioned ref.

        Raises:
            KeyUnavailable: the key is unknown, belongs to another provider name, or is
                disabled.
            KeyDestroyed: the key was destroyed.
        """
        entry = self._usable(key)
        version = entry["current"]
        kek = self._open(key.key_id, version, entry["versions"][version])
        nonce = os.urandom(12)
        blob = nonce + AESGCM(kek).encrypt(nonce, dek, context_bytes(context))
        return blob, KeyRef(self.name, key.key_id, version)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        """Unwrap a data key under ``key.version`` (the current version if None), re-reading
        the key file first so a key disabled or destroyed by another process is refused.

        Raises:
            KeyUnavailable: the key is unknown, disabled, or the version never existed.
            KeyDestroyed: the key, or that version, was destroyed.
            DecryptionFailed: ``context`` differs from the one it was wrapped with, or the
                blob was altered.
        """
        entry = self._usable(key)
        version = key.version or entry["current"]
        sealed = entry["versions"].get(version)
        if sealed is None:
            raise (
                KeyDestroyed("that KEK version was destroyed")
                if version in entry.get("destroyed_versions", ())
                else KeyUnavailable("KEK version does not exist")
            )
        kek = self._open(key.key_id, version, sealed)
        if len(wrapped) < 12 + 16:
            raise DecryptionFailed("wrapped data key is too short")
        try:
            return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], context_bytes(context))
        except InvalidTag as exc:
            raise DecryptionFailed("wrapped data key does not open in this context") from exc

    def rotate(self, key: KeyRef) -> KeyRef:
        """Add a new current KEK version (one past the highest ever issued, destroyed ones
        included, so a number is never reused); older versions still unwrap. A disabled key
        can be rotated.

        Raises:
            KeyUnavailable: the key is unknown.
            KeyDestroyed: the key was destroyed.
        """
        with self._changing() as keys:
            entry = self._entry_in(keys, key)
            if entry["destroyed"]:
                raise KeyDestroyed("the tenant's key was destroyed")
            known = [*entry["versions"], *entry.get("destroyed_versions", ())]
            version = str(max(int(v) for v in known) + 1)
            entry["versions"][version] = self._seal(key.key_id, version)
            entry["current"] = version
        return KeyRef(self.name, key.key_id, version)

    def describe(self, key: KeyRef) -> KeyInfo:
        """The key's current version, live versions and state, read fresh from the file;
        enabled is False once destroyed. ``managed_by`` is "platform" under the default
        provider name, "customer" under any other.

        Raises:
            KeyUnavailable: the key is unknown.
        """
        entry = self._entry(key)
        return KeyInfo(
            KeyRef(self.name, key.key_id, entry["current"]),
            enabled=entry["enabled"] and not entry["destroyed"],
            versions=tuple(sorted(entry["versions"], key=int)),
            managed_by="platform" if self.name == NAME else "customer",
            location=str(self._path),
        )

    def disable(self, key: KeyRef) -> None:
        """Disable the key (reversible): wrap and unwrap refuse it in every process from
        their next read of the file.

        Raises:
            KeyUnavailable: the key is unknown.
            KeyDestroyed: the key was destroyed.
        """
        self._set(key, enabled=False)

    def enable(self, key: KeyRef) -> None:
        """Re-enable a disabled key.

        Raises:
            KeyUnavailable: the key is unknown.
            KeyDestroyed: the key was destroyed (that cannot be undone).
        """
        self._set(key, enabled=True)

    def destroy(self, key: KeyRef) -> None:
        """Crypto-shred: delete every sealed version of the key from the file
        (irreversible), remembering only their numbers so later unwraps raise
        ``KeyDestroyed``. Destroying a destroyed key again is a no-op.

        Raises:
            KeyUnavailable: the key is unknown.
        """
        with self._changing() as keys:
            entry = self._entry_in(keys, key)
            gone = [*entry.get("destroyed_versions", ()), *entry["versions"]]
            entry.update(
                destroyed=True,
                enabled=False,
                versions={},
                destroyed_versions=sorted(set(gone), key=int),
            )

    def destroy_version(self, key: KeyRef, version: str) -> None:
        """Destroy one KEK version (never the current one): what it wrapped, copies
        included, opens with nothing any more."""
        with self._changing() as keys:
            entry = self._entry_in(keys, key)
            if version == entry["current"]:
                raise KeyManagementError("the current KEK version cannot be destroyed alone")
            if entry["versions"].pop(version, None) is not None:
                entry["destroyed_versions"] = sorted(
                    {*entry.get("destroyed_versions", ()), version}, key=int
                )

    # -- internals -------------------------------------------------------------------

    def _usable(self, key: KeyRef) -> dict[str, Any]:
        entry = self._entry(key)
        if entry["destroyed"]:
            raise KeyDestroyed("the tenant's key was destroyed")
        if not entry["enabled"]:
            raise KeyUnavailable("the tenant's key is disabled")
        return entry

    def _entry(self, key: KeyRef) -> dict[str, Any]:
        with self._locked(fcntl.LOCK_SH):
            return self._entry_in(self._read(), key)

    def _entry_in(self, keys: dict[str, dict[str, Any]], key: KeyRef) -> dict[str, Any]:
        if key.provider != self.name or key.key_id not in keys:
            raise KeyUnavailable("no such key")
        return keys[key.key_id]

    def _set(self, key: KeyRef, *, enabled: bool) -> None:
        with self._changing() as keys:
            entry = self._entry_in(keys, key)
            if entry["destroyed"]:
                raise KeyDestroyed("the tenant's key was destroyed")
            entry["enabled"] = enabled

    def _seal(self, key_id: str, version: str) -> str:
        sealed = self._root.seal(os.urandom(32), f"{key_id}/{version}".encode())
        return base64.b64encode(sealed).decode()

    def _open(self, key_id: str, version: str, sealed: str) -> bytes:
        return self._root.open(base64.b64decode(sealed), f"{key_id}/{version}".encode())

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, mode)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    @contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Lock, re-read, let the caller change the keys, write them back."""
        with self._locked(fcntl.LOCK_EX):
            keys = self._read()
            yield keys
            self._write(keys)

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self._path.exists():
            return {}
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read key file {self._path}: {exc}") from exc
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, dict) or document.get("version") != 1:
            raise ConfigurationError(f"{self._path} is not a tenancy key file")
        return keys

    def _write(self, keys: dict[str, dict[str, Any]]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "keys": keys}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
