"""The provider: customer-managed KEKs generated *on* the token, used only inside it.

Each KEK version is an AES-256 secret key object (``TOKEN``, ``SENSITIVE``, not
``EXTRACTABLE``, not ``COPYABLE``, usable only to encrypt and decrypt): its value never
leaves the HSM, and every wrap and unwrap runs inside it as AES-GCM with the wrap context
(``context_bytes``) as associated data. A wrapped data key is
``iv (12 bytes) || ciphertext || tag (16 bytes)``.

Its own module because these are the ``KeyProvider`` operations and their failure modes;
the session they run in is :mod:`.session`, the objects they leave on the token
:mod:`.objects`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import pkcs11
from pkcs11 import Attribute, Mechanism
from pkcs11 import exceptions as p11
from pkcs11.types import DecryptMixin, EncryptMixin

from tenancy.errors import DecryptionFailed, KeyManagementError, KeyUnavailable, ProviderUnavailable
from tenancy.keys.pkcs11.objects import (
    KeyState,
    create_marker,
    find_marker,
    generate_version,
    read_versions,
)
from tenancy.keys.pkcs11.session import SESSION_LOST, TokenSession
from tenancy.keys.provider import KeyInfo, KeyRef, context_bytes

NAME = "pkcs11"
IV_BYTES = 12
TAG_BITS = 128

# What a token answers to a GCM tag that does not verify (SoftHSM2: CKR_GENERAL_ERROR;
# others: CKR_ENCRYPTED_DATA_INVALID), or to a blob of the wrong length.
_AUTH_FAILED: tuple[type[p11.PKCS11Error], ...] = (
    p11.GeneralError,
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
)
# The token will not change ENCRYPT/DECRYPT on an existing key: fall back to a marker.
_ATTRIBUTE_REFUSED: tuple[type[p11.PKCS11Error], ...] = (
    p11.AttributeReadOnly,
    p11.AttributeValueInvalid,
    p11.AttributeTypeInvalid,
    p11.TemplateInconsistent,
    p11.FunctionNotSupported,
)
# Serialises key-management changes (create, rotate, disable, enable, destroy) across the
# providers of this process, so two rotations cannot both create the same version.
_admin_lock = threading.Lock()


class Pkcs11KeyProvider(TokenSession):
    """Customer-managed KEKs on a PKCS#11 token; implements ``KeyProvider``."""

    def __init__(self, library: str, *, token_label: str, user_pin: str, name: str = NAME) -> None:
        """Load ``library``, find the token labelled ``token_label`` and log in.

        Fails here, with ``ConfigurationError``, on a missing library, an unknown token or
        a wrong PIN, so that a misconfigured service does not start. ``name`` is the
        provider name its ``KeyRef``s carry (another one per token when there are several).
        """
        super().__init__(library, token_label=token_label, user_pin=user_pin, name=name)

    def __repr__(self) -> str:
        return f"Pkcs11KeyProvider(token={self._token_label!r}, pin=***)"

    def close(self) -> None:
        """Close the session; the last provider on a token logs the process out."""
        with self._lock:
            self._drop_session()

    def __enter__(self) -> Pkcs11KeyProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- KeyProvider ---------------------------------------------------------------------

    def create_key(self, *, tenant_id: str) -> KeyRef:
        """Generate version 1 of a new KEK for ``tenant_id`` on the token (non-extractable,
        sensitive) under a fresh random key id; returns its ref.

        Raises:
            ProviderUnavailable: the token failed or refused to generate the key.
        """
        key_id = f"kek-{tenant_id}-{os.urandom(4).hex()}"
        with _admin_lock, self._using() as session:
            generate_version(session, key_id, "1", usable=True)
        return KeyRef(self.name, key_id, "1")

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        """Wrap ``dek`` inside the HSM with AES-GCM under the KEK's current version (a fresh
        random IV, the canonical ``context`` as associated data); ``key.version`` is
        ignored. Returns ``iv || ciphertext || tag`` and the versioned ref. The key's state
        is read from the token first, never from memory.

        Raises:
            KeyUnavailable: the key is unknown, not this provider's, or disabled.
            KeyDestroyed: the key was destroyed.
            ProviderUnavailable: the session or device failed, or the HSM refused to
                encrypt.
        """
        aad = context_bytes(context)
        with self._using() as session:
            state = self._usable_state(session, key)
            version = state.current
            obj = state.versions[version]
            if not isinstance(obj, EncryptMixin):
                raise KeyUnavailable("the tenant's key is disabled")
            iv = os.urandom(IV_BYTES)
            try:
                sealed = obj.encrypt(
                    dek,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=pkcs11.GCMParams(iv, aad, TAG_BITS),
                )
            except SESSION_LOST:
                raise
            except p11.PKCS11Error as exc:
                # Disabled or destroyed since we looked (another process)? Say so.
                self._usable_state(session, key)
                raise ProviderUnavailable(f"the HSM did not wrap: {exc!r}") from exc
            assert isinstance(sealed, bytes)
            return iv + sealed, KeyRef(self.name, key.key_id, version)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        """Unwrap a data key inside the HSM under ``key.version`` (the current version if
        None).

        Raises:
            KeyUnavailable: the key is unknown, not this provider's, disabled, or the
                version does not exist (a version destroyed alone reads like this too).
            KeyDestroyed: the key was destroyed.
            DecryptionFailed: the blob is too short, was altered, or ``context`` differs
                from the one it was wrapped with.
            ProviderUnavailable: the session or device failed, or the HSM refused otherwise.
        """
        aad = context_bytes(context)
        with self._using() as session:
            state = self._usable_state(session, key)
            version = key.version or state.current
            obj = state.versions.get(version)
            if obj is None:
                raise KeyUnavailable("KEK version does not exist")
            if not isinstance(obj, DecryptMixin):
                raise KeyUnavailable("the tenant's key is disabled")
            if len(wrapped) < IV_BYTES + TAG_BITS // 8:
                raise DecryptionFailed("wrapped data key is too short")
            params = pkcs11.GCMParams(wrapped[:IV_BYTES], aad, TAG_BITS)
            try:
                dek = obj.decrypt(
                    wrapped[IV_BYTES:], mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            except SESSION_LOST:
                raise
            except p11.PKCS11Error as exc:
                # Re-reading the key both tells "disabled/destroyed meanwhile" apart and
                # proves the session works, so the error was the tag that did not verify.
                self._usable_state(session, key)
                if isinstance(exc, _AUTH_FAILED):
                    raise DecryptionFailed(
                        "wrapped data key does not open in this context"
                    ) from exc
                raise ProviderUnavailable(f"the HSM did not unwrap: {exc!r}") from exc
            assert isinstance(dek, bytes)
            return dek

    def rotate(self, key: KeyRef) -> KeyRef:
        """Generate a new current version (the highest plus one); older versions still
        unwrap. A key disabled through its attributes gets a new version that is disabled
        too. Rotations are serialised within this process only: two processes rotating one
        key at once are not coordinated.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
            KeyDestroyed: the key was destroyed.
        """
        with _admin_lock, self._using() as session:
            state = self._state(session, key)
            version = str(int(state.current) + 1)
            # A key disabled through its attributes stays so: the new version is born
            # unusable too. (One disabled by a marker stays disabled by the marker.)
            generate_version(session, key.key_id, version, usable=state.attributes_usable)
        return KeyRef(self.name, key.key_id, version)

    def describe(self, key: KeyRef) -> KeyInfo:
        """The key's current version, versions and whether it is enabled, read from the
        token. A destroyed key is described (disabled, no versions, the last current version
        in its ref) rather than refused. ``managed_by`` is always "customer".

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
        """
        self._check_provider(key)
        with self._using() as session:
            destroyed = find_marker(session, key, "destroyed")
            if destroyed is not None:
                last = bytes(destroyed[Attribute.VALUE]).decode() or None
                return KeyInfo(
                    KeyRef(self.name, key.key_id, last),
                    enabled=False,
                    versions=(),
                    managed_by="customer",
                    location=self._location,
                )
            state = self._state(session, key)
            return KeyInfo(
                KeyRef(self.name, key.key_id, state.current),
                enabled=state.enabled,
                versions=tuple(sorted(state.versions, key=int)),
                managed_by="customer",
                location=self._location,
            )

    def disable(self, key: KeyRef) -> None:
        """Disable the key (reversible) by clearing ENCRYPT/DECRYPT on every version, so the
        HSM itself refuses it; on a token that will not change those attributes, by leaving
        a private ``disabled`` marker that every use checks first.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
            KeyDestroyed: the key was destroyed.
        """
        with _admin_lock, self._using() as session:
            state = self._state(session, key)
            if not self._set_usable(state, False) and not state.disabled_marker:
                create_marker(session, key, "disabled")

    def enable(self, key: KeyRef) -> None:
        """Re-enable the key: set ENCRYPT/DECRYPT on every version again, then remove any
        ``disabled`` marker.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's, or the token refuses
                to change the attributes back.
            KeyDestroyed: the key was destroyed.
        """
        with _admin_lock, self._using() as session:
            state = self._state(session, key)
            if not self._set_usable(state, True):
                raise KeyUnavailable("the token refuses to re-enable the tenant's key")
            # Only once every version is usable again does the marker go.
            marker = find_marker(session, key, "disabled")
            if marker is not None:
                marker.destroy()

    def destroy(self, key: KeyRef) -> None:
        """Crypto-shred: leave a private ``destroyed`` marker, then destroy every version on
        the token (irreversible). Interrupted half-way, the key already reads as destroyed,
        and calling again finishes the job; on a destroyed key it is otherwise a no-op.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
        """
        self._check_provider(key)
        with _admin_lock, self._using() as session:
            state = read_versions(session, key)
            if find_marker(session, key, "destroyed") is None:
                if not state.versions:
                    raise KeyUnavailable("no such key")
                # The marker first: should we stop half-way, the key already reads as
                # destroyed, and destroying again finishes the job.
                create_marker(session, key, "destroyed", value=state.current.encode())
            for obj in state.versions.values():
                obj.destroy()
            marker = find_marker(session, key, "disabled")
            if marker is not None:
                marker.destroy()

    def destroy_version(self, key: KeyRef, version: str) -> None:
        """Destroy one replaced version on the token (never the current one)."""
        with _admin_lock, self._using() as session:
            state = read_versions(session, key)
            if state.versions and version == state.current:
                raise KeyManagementError("the current KEK version cannot be destroyed alone")
            obj = state.versions.get(version)
            if obj is not None:
                obj.destroy()

    @staticmethod
    def _set_usable(state: KeyState, usable: bool) -> bool:
        """Set ENCRYPT and DECRYPT on every version; False if the token refuses.

        Only attributes that differ are written, so that enabling a key that was disabled
        by a marker (on a token that refuses the change) does not ask for it at all.
        """
        try:
            for version, obj in state.versions.items():
                can_encrypt, can_decrypt = state.usable[version]
                if can_encrypt != usable:
                    obj[Attribute.ENCRYPT] = usable
                if can_decrypt != usable:
                    obj[Attribute.DECRYPT] = usable
        except _ATTRIBUTE_REFUSED:
            return False
        return True
