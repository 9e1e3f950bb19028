"""The ciphertext format: known answers, and every way a ciphertext must fail."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tenancy.errors import DecryptionFailed, KeyManagementError, UnknownKeyVersion
from tenancy.keys.envelope import (
    HEADER_BYTES,
    Binding,
    DataKey,
    _seal,
    header_version,
    open_,
    seal,
)

DEK = bytes(range(32))
NONCE = bytes.fromhex("000102030405060708090a0b")
HERE = Binding("11111111-1111-4111-8111-111111111111", "worklogs", "comment", "row-1")
# The vector, pinned: any change to the format breaks stored data, so it must fail here.
KNOWN_HEX = (
    "0100000007000102030405060708090a0b7ef0a51196b9dc3f0be4b26a760ef070fec66ca1468cf36d6b"
    "c3defca6473ec5e2c0a0f29d9d799e5eae8df3986102cc5f3d8bae3acc2cc8239f83e8ab"
)


def key(version: int = 7, material: bytes = DEK) -> DataKey:
    return DataKey.from_material(material, version)


def independent_vector() -> bytes:
    """The same message built from the documented layout with cryptography directly."""

    def hkdf(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(DEK)

    header = bytes([1]) + (7).to_bytes(4, "big") + NONCE + hkdf(b"tenancy/v1/commit")
    aad = b"tenancy/v1"
    for field in (HERE.tenant_id, HERE.table, HERE.column, HERE.row_key):
        aad += len(field.encode()).to_bytes(2, "big") + field.encode()
    return header + AESGCM(hkdf(b"tenancy/v1/enc")).encrypt(NONCE, b"hello, tenant", aad + header)


def test_known_answer_for_fixed_key_nonce_and_binding() -> None:
    sealed = _seal(key(), b"hello, tenant", HERE, NONCE)
    assert sealed == independent_vector()
    assert sealed.hex() == KNOWN_HEX
    assert open_(key(), bytes.fromhex(KNOWN_HEX), HERE) == b"hello, tenant"


def test_round_trip_and_fresh_nonce_per_message() -> None:
    first, second = seal(key(), b"x", HERE), seal(key(), b"x", HERE)
    assert first != second and first[5:17] != second[5:17]
    assert open_(key(), first, HERE) == b"x"


@pytest.mark.parametrize(
    "elsewhere",
    [
        Binding(HERE.tenant_id, HERE.table, HERE.column, "row-2"),
        Binding(HERE.tenant_id, HERE.table, "description", HERE.row_key),
        Binding(HERE.tenant_id, "invoices", HERE.column, HERE.row_key),
        Binding("22222222-2222-4222-8222-222222222222", HERE.table, HERE.column, HERE.row_key),
        # Length-prefixing keeps fields from sliding into each other.
        Binding(HERE.tenant_id, HERE.table + "c", "omment", HERE.row_key),
    ],
    ids=["other row", "other column", "other table", "other tenant", "shifted fields"],
)
def test_ciphertext_moved_elsewhere_is_refused(elsewhere: Binding) -> None:
    sealed = seal(key(), b"secret", HERE)
    with pytest.raises(DecryptionFailed):
        open_(key(), sealed, elsewhere)


@pytest.mark.parametrize("position", [0, 1, 4, 5, 16, 17, 48, 49, -1])
def test_any_tampered_byte_is_refused(position: int) -> None:
    sealed = bytearray(seal(key(), b"secret", HERE))
    sealed[position] ^= 0x01
    with pytest.raises(DecryptionFailed):  # UnknownKeyVersion is a DecryptionFailed too
        open_(key(), bytes(sealed), HERE)


@pytest.mark.parametrize("length", [0, 1, HEADER_BYTES, HEADER_BYTES + 15])
def test_truncated_ciphertext_is_refused(length: int) -> None:
    sealed = seal(key(), b"secret", HERE)
    with pytest.raises(DecryptionFailed, match="decryption failed"):
        open_(key(), sealed[:length], HERE)


def test_unknown_format_and_key_version_are_typed() -> None:
    sealed = bytearray(seal(key(), b"secret", HERE))
    sealed[0] = 2
    with pytest.raises(UnknownKeyVersion):
        header_version(bytes(sealed))
    with pytest.raises(UnknownKeyVersion):
        open_(key(version=8), seal(key(), b"secret", HERE), HERE)


def test_one_ciphertext_never_opens_under_another_key() -> None:
    sealed = seal(key(), b"secret", HERE)
    other = key(material=bytes(32))
    with pytest.raises(DecryptionFailed) as refused:
        open_(other, sealed, HERE)
    assert refused.value.reason == "key commitment mismatch"


@pytest.mark.parametrize("nonce", [b"", bytes(8), bytes(16)])
def test_nonces_are_exactly_twelve_bytes(nonce: bytes) -> None:
    with pytest.raises(KeyManagementError):
        _seal(key(), b"x", HERE, nonce)


def test_data_keys_are_32_bytes_and_never_shown() -> None:
    with pytest.raises(KeyManagementError):
        DataKey.from_material(bytes(16), 1)
    assert DEK.hex() not in repr(key()) and "commitment" not in repr(key())
