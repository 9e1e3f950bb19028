"""TenantKeys: per-tenant data keys, rotation, customer keys, revocation, shredding."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import (
    ConfigurationError,
    DecryptionFailed,
    KeyDestroyed,
    KeyUnavailable,
    TenantContextConflict,
    UnknownKeyVersion,
)
from tenancy.events import MemorySink
from tenancy.keys import Binding, DataKeyCache, LocalKeyProvider, RootKey, TenantKeys
from tenancy.tenants import Tenant
from tests.unit.keys.conftest import Counting, raw_rows

PURPOSE = "worklogs"


def at(tenant: Tenant, row: str = "row-1", column: str = "comment") -> Binding:
    return Binding(tenant.id, "worklogs", column, row)


def test_each_tenant_gets_its_own_kek_and_data_key(
    tenant_keys: TenantKeys, acme: Tenant, globex: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    tenant_keys.provision(globex.id)
    mine = tenant_keys.encrypt(b"acme secret", at(acme), purpose=PURPOSE)
    theirs = tenant_keys.encrypt(b"globex secret", at(globex), purpose=PURPOSE)
    assert tenant_keys.status(acme.id).kek.ref != tenant_keys.status(globex.id).kek.ref  # type: ignore[union-attr]
    # Same row key, other tenant: the binding and the key both differ.
    with pytest.raises(DecryptionFailed):
        tenant_keys.decrypt(mine, at(globex), purpose=PURPOSE)
    assert tenant_keys.decrypt(theirs, at(globex), purpose=PURPOSE) == b"globex secret"


def test_kek_material_is_never_written_in_the_clear(
    tmp_path: Path, tenant_keys: TenantKeys, acme: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    key_file = tmp_path / "keys" / "keks.json"
    document = json.loads(key_file.read_text())
    (entry,) = document["keys"].values()
    sealed = entry["versions"]["1"]
    assert len(sealed) > 60  # nonce + 32-byte key + tag, base64: sealed, not raw
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys" / "root.key").stat().st_mode) == 0o600
    other_root = RootKey(bytes(32))
    with pytest.raises(ConfigurationError):
        LocalKeyProvider(key_file, root=other_root).wrap(
            tenant_keys.status(acme.id).kek.ref, bytes(32), context={"t": "x"}
        )  # type: ignore[union-attr]


def test_warm_reads_unwrap_once_per_data_key_per_ttl(
    tenant_keys: TenantKeys, platform: Counting, acme: Tenant, clock: FrozenClock
) -> None:
    tenant_keys.provision(acme.id)
    sealed = [
        tenant_keys.encrypt(b"v%d" % i, at(acme, f"r{i}"), purpose=PURPOSE) for i in range(50)
    ]
    tenant_keys.cache.forget(acme.id)
    before = platform.calls.get("unwrap", 0)
    for _ in range(200):
        for i, value in enumerate(sealed):
            tenant_keys.decrypt(value, at(acme, f"r{i}"), purpose=PURPOSE)
    assert platform.calls["unwrap"] - before == 1
    clock.advance(61)
    tenant_keys.decrypt(sealed[0], at(acme, "r0"), purpose=PURPOSE)
    assert platform.calls["unwrap"] - before == 2


def test_revoked_customer_key_fails_reads_within_the_ttl_only_for_that_tenant(
    tenant_keys: TenantKeys,
    customer: Counting,
    acme: Tenant,
    globex: Tenant,
    clock: FrozenClock,
    engine: Engine,
) -> None:
    cmk = customer.create_key(tenant_id=acme.id)
    tenant_keys.provision(acme.id, key=cmk)
    tenant_keys.provision(globex.id)
    mine = tenant_keys.encrypt(b"acme plaintext marker", at(acme), purpose=PURPOSE)
    theirs = tenant_keys.encrypt(b"globex data", at(globex), purpose=PURPOSE)

    customer.disable(cmk)  # the customer revokes our access in its own KMS
    assert tenant_keys.decrypt(mine, at(acme), purpose=PURPOSE)  # cached: still inside the TTL
    clock.advance(61)
    with pytest.raises(KeyUnavailable):
        tenant_keys.decrypt(mine, at(acme), purpose=PURPOSE)
    with pytest.raises(KeyUnavailable):
        tenant_keys.encrypt(b"more", at(acme, "row-2"), purpose=PURPOSE)
    assert tenant_keys.decrypt(theirs, at(globex), purpose=PURPOSE) == b"globex data"
    # Nothing readable about acme in the key table either.
    dump = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
        for row in raw_rows(engine, "tenancy_data_keys")
        for v in row
    )
    assert b"acme plaintext marker" not in dump

    customer.enable(cmk)
    assert tenant_keys.decrypt(mine, at(acme), purpose=PURPOSE) == b"acme plaintext marker"


def test_kek_rotation_rewraps_data_keys_and_leaves_ciphertexts_alone(
    tenant_keys: TenantKeys, platform: Counting, acme: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    sealed = tenant_keys.encrypt(b"kept", at(acme), purpose=PURPOSE)
    tenant_keys.encrypt(b"other purpose", at(acme), purpose="invoices")
    before = {r.purpose: r.wrapped for r in tenant_keys.status(acme.id).data_keys}
    assert tenant_keys.rotate_kek(acme.id) == 2
    after = tenant_keys.status(acme.id)
    assert {r.purpose: r.kek.version for r in after.data_keys} == {"invoices": "2", "worklogs": "2"}
    assert all(before[r.purpose] != r.wrapped for r in after.data_keys)
    assert tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE) == b"kept"
    # With no grace period the replaced version is destroyed at once.
    assert after.kek_info is not None and after.kek_info.versions == ("2",)


def test_switching_to_a_customer_key_rewraps_without_reencrypting(
    tenant_keys: TenantKeys, customer: Counting, acme: Tenant, engine: Engine
) -> None:
    tenant_keys.provision(acme.id)
    sealed = tenant_keys.encrypt(b"moved under a CMK", at(acme), purpose=PURPOSE)
    cmk = customer.create_key(tenant_id=acme.id)
    assert tenant_keys.use_provider(acme.id, cmk) == 1
    status = tenant_keys.status(acme.id)
    assert status.kek is not None and status.kek.managed_by == "customer"
    # The platform's layer stays (a new version), the customer's key wraps on top.
    assert status.data_keys[0].kek.provider == "local"
    assert status.data_keys[0].cmk is not None
    assert status.data_keys[0].cmk.provider == "customer-local"
    # The very same ciphertext opens: data was not re-encrypted, only its key re-wrapped.
    assert tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE) == b"moved under a CMK"
    customer.disable(cmk)
    tenant_keys.cache.forget(acme.id)
    with pytest.raises(KeyUnavailable):
        tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE)


def test_data_keys_rotate_by_message_count_and_by_age(
    engine: Engine, platform: Counting, clock: FrozenClock, acme: Tenant
) -> None:
    keys = TenantKeys(
        engine,
        [platform],
        clock=clock,
        dek_max_messages=2048,  # type: ignore[list-item]
        dek_max_age=timedelta(days=30),
    )
    keys.create_schema()
    keys.provision(acme.id)
    versions = {keys.encrypt(b"x", at(acme), purpose=PURPOSE)[4] for _ in range(2048 + 1100)}
    assert versions == {1, 2}  # counted in batches of 1024: rotated after 2048 messages
    clock.advance(31 * 86400)
    assert keys.encrypt(b"x", at(acme), purpose=PURPOSE)[4] == 3
    assert [r.version for r in keys.status(acme.id).data_keys] == [1, 2, 3]


def test_message_limit_must_stay_far_below_the_nonce_bound(
    engine: Engine, platform: Counting
) -> None:
    with pytest.raises(ConfigurationError):
        TenantKeys(engine, [platform], dek_max_messages=2**31)  # type: ignore[list-item]


def test_transient_outage_is_retried_then_unavailable_never_another_key(
    tenant_keys: TenantKeys, platform: Counting, acme: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    sealed = tenant_keys.encrypt(b"x", at(acme), purpose=PURPOSE)
    tenant_keys.cache.forget(acme.id)
    platform.outages = 2
    assert tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE) == b"x"  # third try answers
    tenant_keys.cache.forget(acme.id)
    platform.outages = 10
    with pytest.raises(KeyUnavailable, match="unavailable"):
        tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE)
    assert platform.outages == 6  # 1 try + 3 retries, then it gave up


def test_shredded_tenant_cannot_be_read_and_its_rows_remain(
    tenant_keys: TenantKeys, platform: Counting, acme: Tenant, globex: Tenant, events: MemorySink
) -> None:
    tenant_keys.provision(acme.id)
    tenant_keys.provision(globex.id)
    sealed = tenant_keys.encrypt(b"gone", at(acme), purpose=PURPOSE)
    kek = tenant_keys.status(acme.id).kek
    assert kek is not None
    tenant_keys.shred(acme.id)
    with pytest.raises(KeyDestroyed):
        tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE)
    with pytest.raises(KeyDestroyed):
        platform.inner.unwrap(kek.ref, b"\x00" * 60, context={})
    assert tenant_keys.status(acme.id).data_keys == ()
    assert tenant_keys.status(globex.id).kek is not None
    assert "key.destroy" in events.actions()


def test_unknown_data_key_version_is_typed(tenant_keys: TenantKeys, acme: Tenant) -> None:
    tenant_keys.provision(acme.id)
    sealed = bytearray(tenant_keys.encrypt(b"x", at(acme), purpose=PURPOSE))
    sealed[4] = 9
    with pytest.raises(UnknownKeyVersion):
        tenant_keys.decrypt(bytes(sealed), at(acme), purpose=PURPOSE)


def test_data_of_another_tenant_than_the_bound_one_is_refused(
    tenant_keys: TenantKeys, acme: Tenant, globex: Tenant
) -> None:
    tenant_keys.provision(globex.id)
    ctx = TenantContext(acme.id, acme.slug, "eu-central-1", Principal("i", acme.id, "alice"), "rid")
    with bind(ctx), pytest.raises(TenantContextConflict):
        tenant_keys.encrypt(b"x", at(globex), purpose=PURPOSE)


def test_every_key_operation_leaves_evidence(
    tenant_keys: TenantKeys, acme: Tenant, events: MemorySink
) -> None:
    ctx = TenantContext(
        acme.id,
        acme.slug,
        "eu-central-1",
        Principal("i", acme.id, "sam"),
        "rid-9",
        support_grant_id="g-1",
    )
    tenant_keys.provision(acme.id)
    with bind(ctx):
        sealed = tenant_keys.encrypt(b"x", at(acme), purpose=PURPOSE)
        tenant_keys.cache.forget(acme.id)
        tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE)
    tenant_keys.rotate_kek(acme.id)
    tenant_keys.shred(acme.id)
    actions = events.actions()
    for action in ("key.provision", "key.wrap", "key.unwrap", "key.rotate", "key.destroy"):
        assert action in actions
    unwrap = next(e for e in events.events if e.action == "key.unwrap" and e.actor == "sam")
    assert unwrap.tenant_id == acme.id and unwrap.request_id == "rid-9"
    assert unwrap.details["support_grant_id"] == "g-1"
    assert unwrap.details["purpose"] == PURPOSE and unwrap.details["key_id"]


def test_cache_limits_uses_per_entry() -> None:
    from tenancy.keys.envelope import DataKey

    cache = DataKeyCache(ttl=60, max_uses=3)
    cache.put(("t", "p", 1), DataKey.from_material(bytes(32), 1), now=0)
    assert [cache.get(("t", "p", 1), now=1) is not None for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


class FlakySignal:
    """A key-state signal whose announcements fail until ``working`` is set."""

    def __init__(self) -> None:
        self.working = False
        self.announced: list[str] = []

    def generation(self, tenant_id: str) -> int:
        return len(self.announced)

    def changed(self, tenant_id: str) -> None:
        if not self.working:
            raise ConnectionError("the signal's server is down")
        self.announced.append(tenant_id)


def test_a_change_that_cannot_be_announced_is_recorded_and_can_be_announced_again(
    engine: Engine,
    platform: Counting,
    customer: Counting,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
) -> None:
    from tenancy.errors import KeyManagementError

    signal = FlakySignal()
    signal.working = True
    keys = TenantKeys(
        engine,
        [platform, customer],
        clock=clock,
        events=events,  # type: ignore[list-item]
        state=signal,
    )
    keys.create_schema()
    keys.provision(acme.id)
    signal.working = False
    with pytest.raises(KeyManagementError, match="tenancy keys announce"):
        keys.shred(acme.id)
    assert any(e.action == "key.destroy" for e in events.events)  # the evidence is there
    assert keys.status(acme.id).kek.state == "destroyed"  # type: ignore[union-attr]
    signal.working = True
    keys.announce(acme.id)
    assert signal.announced[-1] == acme.id


def test_malformed_key_material_is_a_typed_error(tmp_path: Path, root: RootKey) -> None:
    provider = LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root)
    ref = provider.create_key(tenant_id="t")
    with pytest.raises(DecryptionFailed):
        provider.unwrap(ref, b"short", context={"t": "x"})  # not a bare ValueError
    with pytest.raises(ConfigurationError):
        root.open(b"short", b"aad")
    listing = tmp_path / "list.json"
    listing.write_text("[]")
    with pytest.raises(ConfigurationError):
        LocalKeyProvider(listing, root=root)  # not an AttributeError
