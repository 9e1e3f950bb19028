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

What does not change per message is computed once: per data key (``DataKey``) the AES-GCM
key, the commitment and the header's first five bytes; per ``Binding`` the associated
data before the header. A message then costs a nonce from the OS, the AEAD call and a few
concatenations; opening checks version, commitment and tag on every message.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from hmac import compare_digest

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
_HEAD = struct.Struct(">BI")  # format and DEK version: the header up to the nonce
_NONCE_AT = _HEAD.size  # 5
_COMMITMENT_AT = _NONCE_AT + NONCE_BYTES  # 17
_VERSION = struct.Struct(">I")
MIN_CIPHERTEXT_BYTES = HEADER_BYTES + TAG_BYTES
_AAD_PREFIX = b"tenancy/v1"
_LEN = struct.Struct(">H")
# Below this many bytes, slicing the ciphertext's body (a copy) costs less than a
# memoryview of it; above, the memoryview saves copying a large value.
_COPY_BELOW = 16 * 1024
_urandom = os.urandom


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a ciphertext belongs: it decrypts only here.

    Its associated data before the header depends on nothing else, so it is encoded once,
    at the first use, and kept (the fields are frozen; equality, hashing and ``repr``
    ignore the kept bytes).
    """

    tenant_id: str
    table: str
    column: str
    row_key: str
    _prefix: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def aad(self, header: bytes) -> bytes:
        """The associated data for a ciphertext with ``header``: ``tenancy/v1``, then tenant
        id, table, column and row key each UTF-8 with a 2-byte length prefix (so no two
        bindings encode alike), then the header.

        Raises:
            KeyManagementError: a field is longer than 65,535 bytes.
        """
        return self.aad_prefix() + header

    def aad_prefix(self) -> bytes:
        """The associated data before the header (see :meth:`aad`), encoded once.

        Raises:
            KeyManagementError: a field is longer than 65,535 bytes.
        """
        prefix = self._prefix
        if prefix is None:
            prefix = _encode_binding(self.tenant_id, self.table, self.column, self.row_key)
            object.__setattr__(self, "_prefix", prefix)
        return prefix


def _encode_binding(tenant_id: str, table: str, column: str, row_key: str) -> bytes:
    t, a, c, r = (v.encode("utf-8") for v in (tenant_id, table, column, row_key))
    try:
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
            )
        )
    except struct.error:
        raise KeyManagementError("a binding field is too long") from None


@dataclass(frozen=True, slots=True)
class DataKey:
    """A DEK's derived keys; the raw DEK is not kept. ``repr`` shows no key material.

    Everything about a message that depends only on the key is computed here, once per
    key: the AES-GCM key schedule (``aead``), the key commitment, and the header's first
    five bytes (``head``: format and version).
    """

    version: int
    aead: AESGCM = field(repr=False)
    commitment: bytes = field(repr=False)
    head: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.version <= 0xFFFFFFFF:
            raise KeyManagementError("a data-key version is a positive 32-bit integer")
        if len(self.commitment) != COMMITMENT_BYTES:
            raise KeyManagementError("a key commitment is 32 bytes")
        object.__setattr__(self, "head", _HEAD.pack(FORMAT_V1, self.version))

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
    nonce = _urandom(NONCE_BYTES)  # exactly 96 bits from the OS, per message
    header = key.head + nonce + key.commitment
    return header + key.aead.encrypt(nonce, plaintext, binding.aad_prefix() + header)


def _seal(key: DataKey, plaintext: bytes, binding: Binding, nonce: bytes) -> bytes:
    """``seal`` with a given nonce (known-answer tests)."""
    # AESGCM accepts other nonce lengths and cannot detect reuse: enforce 96 random bits.
    if len(nonce) != NONCE_BYTES:
        raise KeyManagementError("nonces are exactly 12 bytes")
    header = key.head + nonce + key.commitment
    return header + key.aead.encrypt(nonce, plaintext, binding.aad_prefix() + header)


def header_version(ciphertext: bytes) -> int:
    """The DEK version a ciphertext names.

    Raises:
        UnknownKeyVersion: not format version 1.
        DecryptionFailed: too short to be a ciphertext.
    """
    if len(ciphertext) < MIN_CIPHERTEXT_BYTES:
        raise DecryptionFailed("ciphertext truncated")
    if ciphertext[0] != FORMAT_V1:
        raise UnknownKeyVersion("unknown ciphertext format version")
    return int(_VERSION.unpack_from(ciphertext, 1)[0])


def open_(key: DataKey, ciphertext: bytes, binding: Binding) -> bytes:
    """Decrypt a ciphertext sealed for ``binding``.

    Raises:
        DecryptionFailed: truncated, tampered, committed to another key, or bound
            elsewhere (another tenant, table, column or row).
        UnknownKeyVersion: it names another format or data-key version than ``key``.
    """
    if len(ciphertext) < MIN_CIPHERTEXT_BYTES:
        raise DecryptionFailed("ciphertext truncated")
    if ciphertext[0] != FORMAT_V1:
        raise UnknownKeyVersion("unknown ciphertext format version")
    return open_checked(key, ciphertext, binding)


def open_checked(key: DataKey, ciphertext: bytes, binding: Binding) -> bytes:
    """``open_`` for a ciphertext whose length and format :func:`header_version` has
    already accepted: the version, the commitment and the tag are still checked here.

    Raises:
        DecryptionFailed: committed to another key, or tampered, or bound elsewhere.
        UnknownKeyVersion: it names another data-key version than ``key``.
    """
    header = ciphertext[:HEADER_BYTES]
    if header[:_NONCE_AT] != key.head:
        raise UnknownKeyVersion("ciphertext names another data-key version")
    if not compare_digest(header[_COMMITMENT_AT:], key.commitment):
        raise DecryptionFailed("key commitment mismatch")
    body = (
        ciphertext[HEADER_BYTES:]
        if len(ciphertext) < _COPY_BELOW
        else memoryview(ciphertext)[HEADER_BYTES:]  # no copy of large values
    )
    try:
        return key.aead.decrypt(
            header[_NONCE_AT:_COMMITMENT_AT], body, binding.aad_prefix() + header
        )
    except InvalidTag as exc:
        raise DecryptionFailed("authentication failed") from exc


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)
