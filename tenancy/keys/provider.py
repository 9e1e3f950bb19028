"""Key-encryption keys (KEKs) behind one protocol, whoever holds them.

A provider holds each tenant's KEK and never hands it out: it wraps and unwraps data
keys (DEKs) inside its boundary (a local key file sealed by a root key, an HSM over
PKCS#11, a cloud KMS). Every wrap binds a *context* (tenant, purpose, data-key version)
as associated data or KMS encryption context, so a wrapped DEK moved to another tenant
or purpose does not unwrap. Vocabulary follows Vault transit: ``create_key``,
``rotate``, ``wrap`` (encrypt a data key), ``unwrap``, ``describe``, ``destroy``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tenancy.errors import KeyManagementError, ProviderUnavailable

# ProviderUnavailable lives in tenancy.errors; it stays importable from here, where
# providers have always found it.
__all__ = [
    "KeyInfo",
    "KeyProvider",
    "KeyRef",
    "PlatformKeyProvider",
    "ProviderUnavailable",
    "context_bytes",
]


@dataclass(frozen=True, slots=True)
class KeyRef:
    """Names a KEK: its provider, its id there, and a version (``None``: the provider
    tracks versions itself, as AWS KMS does inside its ciphertexts)."""

    provider: str
    key_id: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a provider can say about a KEK without revealing it."""

    ref: KeyRef
    enabled: bool
    versions: tuple[str, ...] = ()
    managed_by: str = "platform"  # or "customer"
    location: str = ""  # e.g. the HSM token or the KMS region


@runtime_checkable
class KeyProvider(Protocol):
    """Holds KEKs; wraps and unwraps data keys inside its own boundary.

    Raises from any method: ``KeyUnavailable`` (disabled, revoked, missing),
    ``KeyDestroyed``, ``DecryptionFailed`` (wrong context or tampered blob),
    ``ProviderUnavailable`` (transient).
    """

    name: str

    def create_key(self, *, tenant_id: str) -> KeyRef:
        """Create a new KEK for ``tenant_id`` inside the provider's boundary; returns its
        ref (the material never leaves the provider)."""

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        """Encrypt ``dek`` under the KEK's current version; returns the blob and the exact
        version that wrapped it (store both)."""

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        """Decrypt a data key wrapped under ``key`` (the exact version stored with it).
        ``context`` must equal the one given to ``wrap``: another tenant's or purpose's
        context raises ``DecryptionFailed``, never returns other bytes."""

    def rotate(self, key: KeyRef) -> KeyRef:
        """Make a new current version; old versions still unwrap. Returns the new ref."""

    def describe(self, key: KeyRef) -> KeyInfo:
        """State and versions of a KEK, without its material."""

    def disable(self, key: KeyRef) -> None:
        """What a customer does in its KMS to revoke access (reversible)."""

    def enable(self, key: KeyRef) -> None:
        """Undo ``disable``; a destroyed key stays destroyed."""

    def destroy(self, key: KeyRef) -> None:
        """Destroy every version (crypto-shredding); irreversible."""


@runtime_checkable
class PlatformKeyProvider(KeyProvider, Protocol):
    """A provider that can hold the platform's KEKs: it can also destroy one replaced
    version, which is how a rotation or a switch to the customer's key makes copies of
    data keys wrapped before it open with nothing."""

    def destroy_version(self, key: KeyRef, version: str) -> None:
        """Destroy one version that is not the current one; irreversible."""


def context_bytes(context: Mapping[str, str]) -> bytes:
    """The canonical encoding of a wrap context, for providers that take associated
    data as bytes (sorted keys, no whitespace, UTF-8)."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items()):
        raise KeyManagementError("a wrap context maps strings to strings")
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()
