"""The warm encrypt and decrypt: what is computed once per key or binding, and every check
that must still run on every use (the cache's TTL, use limit and drops, the key-state
generation, the message count and its writes, the tenant check)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import KeyManagementError, TenantContextConflict
from tenancy.keys import Binding, DataKeyCache, SharedKeyState, TenantKeys
from tenancy.keys.envelope import DataKey, open_, seal
from tenancy.keys.service import COUNT_FLUSH_EVERY
from tenancy.tenants import Tenant
from tests.unit.keys.conftest import Counting
from tests.unit.keys.test_key_copies import other_process

PURPOSE = "worklogs"


def at(tenant: Tenant, row: str = "row-1") -> Binding:
    return Binding(tenant.id, "worklogs", "comment", row)


def version_of(ciphertext: bytes) -> int:
    return int.from_bytes(ciphertext[1:5], "big")


def unwraps(platform: Counting) -> int:
    return platform.calls.get("unwrap", 0)


def test_a_forgotten_cache_entry_is_not_used_by_the_next_encrypt(
    tenant_keys: TenantKeys, platform: Counting, acme: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    tenant_keys.encrypt(b"warm", at(acme), purpose=PURPOSE)
    before = unwraps(platform)
    tenant_keys.encrypt(b"still warm", at(acme), purpose=PURPOSE)
    assert unwraps(platform) == before
    tenant_keys.cache.forget(acme.id)
    tenant_keys.encrypt(b"cold again", at(acme), purpose=PURPOSE)
    assert unwraps(platform) == before + 1


def test_the_cache_ttl_ends_the_remembered_key_of_encrypts(
    tenant_keys: TenantKeys, platform: Counting, acme: Tenant, clock: FrozenClock
) -> None:
    tenant_keys.provision(acme.id)
    tenant_keys.encrypt(b"warm", at(acme), purpose=PURPOSE)
    tenant_keys.cache.forget(acme.id)  # the key in hand came from the wrap: unwrap it once
    tenant_keys.encrypt(b"warm", at(acme), purpose=PURPOSE)
    before = unwraps(platform)
    clock.advance(59)
    tenant_keys.encrypt(b"within the ttl", at(acme), purpose=PURPOSE)
    assert unwraps(platform) == before
    clock.advance(2)
    tenant_keys.encrypt(b"after the ttl", at(acme), purpose=PURPOSE)
    assert unwraps(platform) == before + 1


def test_the_cache_use_limit_counts_warm_encrypts_and_decrypts(
    engine: Engine, platform: Counting, clock: FrozenClock, acme: Tenant
) -> None:
    keys = TenantKeys(
        engine,
        [platform],  # type: ignore[list-item]
        cache=DataKeyCache(ttl=60, max_uses=4),
        clock=clock,
    )
    keys.create_schema()
    keys.provision(acme.id)
    sealed = keys.encrypt(b"x", at(acme), purpose=PURPOSE)
    keys.cache.forget(acme.id)
    before = unwraps(platform)
    for _ in range(2):
        sealed = keys.encrypt(b"x", at(acme), purpose=PURPOSE)
        keys.decrypt(sealed, at(acme), purpose=PURPOSE)
    assert unwraps(platform) == before + 1  # four uses of one entry
    keys.encrypt(b"x", at(acme), purpose=PURPOSE)  # the fifth needs the key again
    assert unwraps(platform) == before + 2


def test_a_rotation_by_another_process_is_used_from_the_next_encrypt(
    engine: Engine, tmp_path: Path, clock: FrozenClock, acme: Tenant, root: object
) -> None:
    cli = other_process(engine, tmp_path, root, clock, SharedKeyState(tmp_path / "s"))  # type: ignore[arg-type]
    service = other_process(engine, tmp_path, root, clock, SharedKeyState(tmp_path / "s"))  # type: ignore[arg-type]
    cli.create_schema()
    cli.provision(acme.id)
    assert version_of(service.encrypt(b"a", at(acme), purpose=PURPOSE)) == 1
    assert version_of(service.encrypt(b"b", at(acme), purpose=PURPOSE)) == 1
    cli.rotate_data_key(acme.id, PURPOSE)
    assert version_of(service.encrypt(b"c", at(acme), purpose=PURPOSE)) == 2  # no clock move


def test_the_message_limit_holds_exactly_across_a_reload_between_count_writes(
    engine: Engine, platform: Counting, clock: FrozenClock, acme: Tenant
) -> None:
    keys = TenantKeys(
        engine,
        [platform],  # type: ignore[list-item]
        cache=DataKeyCache(ttl=60),
        clock=clock,
        dek_max_messages=2 * COUNT_FLUSH_EVERY,
    )
    keys.create_schema()
    keys.provision(acme.id)
    first = COUNT_FLUSH_EVERY + 476  # one count written, 476 not yet
    versions = [version_of(keys.encrypt(b"x", at(acme), purpose=PURPOSE)) for _ in range(first)]
    clock.advance(61)  # the remembered key expires: reloaded with the stored count
    versions += [
        version_of(keys.encrypt(b"x", at(acme), purpose=PURPOSE))
        for _ in range(2 * COUNT_FLUSH_EVERY - first + 1)
    ]
    assert versions.count(1) == 2 * COUNT_FLUSH_EVERY and versions[-1] == 2
    stored = {r.version: r.messages for r in keys.status(acme.id).data_keys}
    assert stored[1] == 2 * COUNT_FLUSH_EVERY


def test_message_counts_reach_the_store_in_batches(tenant_keys: TenantKeys, acme: Tenant) -> None:
    tenant_keys.provision(acme.id)
    for _ in range(COUNT_FLUSH_EVERY - 1):
        tenant_keys.encrypt(b"x", at(acme), purpose=PURPOSE)
    assert tenant_keys.status(acme.id).data_keys[0].messages == 0
    tenant_keys.encrypt(b"x", at(acme), purpose=PURPOSE)
    assert tenant_keys.status(acme.id).data_keys[0].messages == COUNT_FLUSH_EVERY


def test_both_directions_check_the_bound_tenant(
    tenant_keys: TenantKeys, acme: Tenant, globex: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    sealed = tenant_keys.encrypt(b"acme", at(acme), purpose=PURPOSE)
    principal = Principal(issuer="t", tenant_id=globex.id, subject="bob", scopes=frozenset())
    with bind(TenantContext(globex.id, "globex", "eu-central-1", principal, "req-1")):
        with pytest.raises(TenantContextConflict):
            tenant_keys.encrypt(b"x", at(acme), purpose=PURPOSE)
        with pytest.raises(TenantContextConflict):
            tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE)


def test_per_key_and_per_binding_values_are_computed_once_and_match_the_format() -> None:
    key = DataKey.from_material(os.urandom(32), 0x01020304)
    assert key.head == bytes([1, 1, 2, 3, 4])
    binding = Binding("t", "worklogs", "comment", "r")
    assert binding.aad_prefix() is binding.aad_prefix()
    moved = dataclasses.replace(binding, row_key="r2")  # a new binding encodes its own
    assert moved.aad_prefix() != binding.aad_prefix()
    with pytest.raises(KeyManagementError):
        open_(key, seal(key, b"x", binding), moved)
    with pytest.raises(KeyManagementError):
        DataKey(0, key.aead, key.commitment)
    with pytest.raises(KeyManagementError):
        DataKey(1, key.aead, key.commitment[:16])


@pytest.mark.parametrize("size", [0, 1, 16 * 1024 - 66, 16 * 1024 - 65, 16 * 1024, 70_000])
def test_round_trip_on_both_sides_of_the_copy_threshold(size: int) -> None:
    key = DataKey.from_material(os.urandom(32), 9)
    binding = Binding("t", "worklogs", "comment", "r")
    plaintext = os.urandom(size)
    sealed = seal(key, plaintext, binding)
    assert open_(key, sealed, binding) == plaintext
    assert open_(key, bytearray(sealed), binding) == plaintext
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(KeyManagementError):
        open_(key, bytes(tampered), binding)
