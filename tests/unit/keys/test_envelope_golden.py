"""Golden ciphertext: sealed by the envelope as it was before its hot path was reworked
(per-key header and per-binding associated data computed once). Stored data must keep
decrypting, byte for byte, and every tampering must still be refused."""

from __future__ import annotations

import pytest

from tenancy.errors import DecryptionFailed, KeyManagementError, UnknownKeyVersion
from tenancy.keys.envelope import HEADER_BYTES, Binding, DataKey, _seal, open_, seal

DEK = bytes.fromhex("efc05ee8295a3f35b881e4c8f7f3c399f29885429034a71fa59f2695523bd690")
VERSION = 3
HERE = Binding("7c9e6679-7425-40de-944b-e07fc1f90ae7", "worklogs", "comment", "row-é/42")
PLAINTEXT = bytes.fromhex(
    "676f6c64656e3a207365616c6564206265666f726520746865207065722d6b657920707265636f6d7075"
    "746174696f6e20e29c93000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "2021222324252627"
)
GOLDEN = bytes.fromhex(
    "01000000034542b7637c58c6c6ed2176bd3ae4f968a1a0ed951b1efc8c5033715e8e4aeefc525bd8dcb6"
    "b44494f2f57c89894ec2c3daed1702ee043af1c2984293be22f2d531d8ae5a7176e609523762c6154401"
    "532cc55d2c4fd57c0d83ea18cc92f30a97f813dfdbc98a0299941a94391fc5e2be2082a6be81a8f06f84"
    "3224f47dd6a80b386f7ba8919bef3e447ec0156e7f72e1b965610c960bfb63"
)


def key(material: bytes = DEK, version: int = VERSION) -> DataKey:
    return DataKey.from_material(material, version)


def test_the_golden_ciphertext_still_decrypts() -> None:
    assert open_(key(), GOLDEN, HERE) == PLAINTEXT
    # The same bytes as a fresh Binding (nothing cached on it) and as a memoryview.
    fresh = Binding(HERE.tenant_id, HERE.table, HERE.column, HERE.row_key)
    assert open_(key(), memoryview(GOLDEN), fresh) == PLAINTEXT


def test_sealing_with_the_golden_nonce_gives_the_golden_bytes() -> None:
    nonce = GOLDEN[5:17]
    assert _seal(key(), PLAINTEXT, HERE, nonce) == GOLDEN


@pytest.mark.parametrize(
    "position",
    [0, 1, 4, 5, 16, 17, 30, 48, HEADER_BYTES, len(GOLDEN) - 17, len(GOLDEN) - 1],
    ids=[
        "format",
        "version-first",
        "version-last",
        "nonce-first",
        "nonce-last",
        "commitment-first",
        "commitment-middle",
        "commitment-last",
        "body-first",
        "body-last",
        "tag-last",
    ],
)
def test_a_tampered_golden_byte_is_refused(position: int) -> None:
    tampered = bytearray(GOLDEN)
    tampered[position] ^= 0x80
    with pytest.raises(DecryptionFailed):
        open_(key(), bytes(tampered), HERE)


def test_a_tampered_commitment_is_refused_before_decrypting() -> None:
    tampered = bytearray(GOLDEN)
    tampered[17:49] = bytes(32)
    with pytest.raises(DecryptionFailed) as refused:
        open_(key(), bytes(tampered), HERE)
    assert refused.value.reason == "key commitment mismatch"


def test_the_golden_ciphertext_under_another_version_or_key_is_refused() -> None:
    with pytest.raises(UnknownKeyVersion):
        open_(key(version=VERSION + 1), GOLDEN, HERE)
    with pytest.raises(DecryptionFailed) as refused:
        open_(key(material=bytes(32)), GOLDEN, HERE)
    assert refused.value.reason == "key commitment mismatch"


@pytest.mark.parametrize(
    "elsewhere",
    [
        Binding("7c9e6679-7425-40de-944b-e07fc1f90ae8", HERE.table, HERE.column, HERE.row_key),
        Binding(HERE.tenant_id, "invoices", HERE.column, HERE.row_key),
        Binding(HERE.tenant_id, HERE.table, "description", HERE.row_key),
        Binding(HERE.tenant_id, HERE.table, HERE.column, "row-e/42"),
        Binding(HERE.tenant_id, HERE.table + "c", "omment", HERE.row_key),
    ],
    ids=["tenant", "table", "column", "row", "shifted"],
)
def test_the_golden_ciphertext_bound_elsewhere_is_refused(elsewhere: Binding) -> None:
    with pytest.raises(DecryptionFailed) as refused:
        open_(key(), GOLDEN, elsewhere)
    assert refused.value.reason == "authentication failed"


def test_the_associated_data_is_the_documented_bytes_and_cached_per_binding() -> None:
    header = GOLDEN[:HEADER_BYTES]
    expected = b"tenancy/v1"
    for value in (HERE.tenant_id, HERE.table, HERE.column, HERE.row_key):
        encoded = value.encode("utf-8")
        expected += len(encoded).to_bytes(2, "big") + encoded
    binding = Binding(HERE.tenant_id, HERE.table, HERE.column, HERE.row_key)
    assert binding.aad(header) == expected + header
    assert binding.aad(header) == expected + header  # the second call reads the cache
    # Caching is invisible: equality, hashing and repr only see the four fields.
    assert binding == HERE and hash(binding) == hash(HERE)
    assert "tenancy/v1" not in repr(binding)


def test_a_binding_field_too_long_is_refused_at_each_use() -> None:
    long = Binding("t", "worklogs", "comment", "r" * 0x10000)
    for _ in range(2):
        with pytest.raises(KeyManagementError):
            seal(key(), b"x", long)


def test_each_message_draws_its_own_nonce() -> None:
    nonces = {seal(key(), b"x", HERE)[5:17] for _ in range(1000)}
    assert len(nonces) == 1000
