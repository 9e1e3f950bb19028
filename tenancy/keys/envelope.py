"""The ciphertext format: AES-256-GCM under a data key, committed and bound to its place.

Format version 1, all integers big-endian::

    offset  size  field
    0       1     format version (0x01)
    1       4     data-key (DEK) version
    5       12    nonce: random, exactly 96 bits, drawn per message
    17      32    key commitment: HKDF-SHA256(DEK, info="tenancy/v1/commit")
    49      n+16  AES-256-GCM ciphertext and tag under HKDF-SHA256(DEK, info="tenancy/v1/enc")

The associated data is ``"tenancy/v1"`` followed by the length-prefixed tenant id, table,
column and row key, then the 49-byte header. A ciphertext copied to another row, column,
table or tenant, or with any header byte changed, fails authentication. The commitment is
checked before decrypting, so one ciphertext can never decrypt under two keys (GCM alone
is not key-committing). All primitives come from ``cryptography``.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tenancy.errors import DecryptionFailed, KeyManagementError, UnknownKeyVersion

FORMAT_V1 = 1
NONCE_BYTES = 12
DEK_BYTES = 32
COMMITMENT_BYTES = 32
TAG_BYTES = 16
_HEADER = struct.Struct(">BI12s32s")
HEADER_BYTES = _HEADER.size  # 49
_AAD_PREFIX = b"tenancy/v1"
_LEN = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a ciphertext belongs: it decrypts only here."""

    tenant_id: str
    table: str
    column: str
    row_key: str

    def aad(self, header: bytes) -> bytes:
        """The associated data for a ciphertext with ``header``: ``tenancy/v1``, then tenant
        id, table, column and row key each UTF-8 with a 2-byte length prefix (so no two
        bindings encode alike), then the header.

        Raises:
            KeyManagementError: a field is longer than 65,535 bytes.
        """
        fields = [
            v.encode("utf-8") for v in (self.tenant_id, self.table, self.column, self.row_key)
        ]
        if any(len(f) > 0xFFFF for f in fields):
            raise KeyManagementError("a binding field is too long")
        t, a, c, r = fields
        return b"".join(
            (
                _AAD_PREFIX,
                _LEN.pack(len(t)),
                t,
                _LEN.pack(len(a)),
                a,
                _LEN.pack(len(c)),
                c,
                _LEN.pack(len(r)),
                r,
                header,
            )
        )


@dataclass(frozen=True, slots=True)
class DataKey:
    """A DEK's derived keys; the raw DEK is not kept. ``repr`` shows no key material."""

    version: int
    aead: AESGCM = field(repr=False)
    commitment: bytes = field(repr=False)

    @classmethod
    def from_material(cls, material: bytes, version: int) -> DataKey:
        """Derive the encryption key and the key commitment from a 32-byte DEK (HKDF-SHA256,
        one label each); the raw DEK is not kept in the result.

        Raises:
            KeyManagementError: ``material`` is not 32 bytes, or ``version`` is not a
                positive 32-bit integer.
        """
        if len(material) != DEK_BYTES:
            raise KeyManagementError("a data key is 32 bytes")
        if not 0 < version <= 0xFFFFFFFF:
            raise KeyManagementError("a data-key version is a positive 32-bit integer")
        return cls(
            version,
            AESGCM(_derive(material, b"tenancy/v1/enc")),
            _derive(material, b"tenancy/v1/commit"),
        )


def seal(key: DataKey, plaintext: bytes, binding: Binding) -> bytes:
    """Encrypt ``plaintext`` for ``binding`` under ``key`` with a fresh random nonce."""
    return _seal(key, plaintext, binding, os.urandom(NONCE_BYTES))


def _seal(key: DataKey, plaintext: bytes, binding: Binding, nonce: bytes) -> bytes:
    # AESGCM accepts other nonce lengths and cannot detect reuse: enforce 96 random bits.
    if len(nonce) != NONCE_BYTES:
        raise KeyManagementError("nonces are exactly 12 bytes")
    header = _HEADER.pack(FORMAT_V1, key.version, nonce, key.commitment)
    return header + key.aead.encrypt(nonce, plaintext, binding.aad(header))


def header_version(ciphertext: bytes) -> int:
    """The DEK version a ciphertext names.

    Raises:
        UnknownKeyVersion: not format version 1.
        DecryptionFailed: too short to be a ciphertext.
    """
    if len(ciphertext) < HEADER_BYTES + TAG_BYTES:
        raise DecryptionFailed("ciphertext truncated")
    if ciphertext[0] != FORMAT_V1:
        raise UnknownKeyVersion("unknown ciphertext format version")
    return int(struct.unpack_from(">I", ciphertext, 1)[0])


def open_(key: DataKey, ciphertext: bytes, binding: Binding) -> bytes:
    """Decrypt a ciphertext sealed for ``binding``.

    Raises:
        DecryptionFailed: truncated, tampered, committed to another key, or bound
            elsewhere (another tenant, table, column or row).
        UnknownKeyVersion: it names another format or data-key version than ``key``.
    """
    if header_version(ciphertext) != key.version:
        raise UnknownKeyVersion("ciphertext names another data-key version")
    _, _, nonce, commitment = _HEADER.unpack_from(ciphertext)
    if not hmac.compare_digest(commitment, key.commitment):
        raise DecryptionFailed("key commitment mismatch")
    view = memoryview(ciphertext)  # no copy of large values
    try:
        return key.aead.decrypt(nonce, view[HEADER_BYTES:], binding.aad(bytes(view[:HEADER_BYTES])))
    except InvalidTag as exc:
        raise DecryptionFailed("authentication failed") from exc


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)
