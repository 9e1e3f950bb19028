"""Copies of wrapped data keys, and caches in other processes, after a key-state change.

A wrapped data key lives on in places the platform cannot clean (WAL, dead tuples,
replicas, backups). These tests take such a copy (a ``DataKeyRecord`` read before the
change) and open it afterwards the way anyone holding the key files would: fresh
``KeyLayers`` over the same providers, no cache. They also prove that a change made
through one ``TenantKeys`` reaches another one (another process) on its next use only
when both share a ``SharedKeyState``, and they document what the design does not cover
(rolling a cell back to an older ciphertext of its own).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.errors import KeyDestroyed, KeyUnavailable
from tenancy.keys import (
    Binding,
    DataKeyCache,
    KeyRef,
    KeyStateSignal,
    LocalKeyProvider,
    ProcessKeyState,
    RootKey,
    SharedKeyState,
    TenantKeys,
)
from tenancy.keys.layers import KeyLayers, wrap_context
from tenancy.keys.store import DataKeyRecord
from tenancy.tenants import Tenant
from tests.unit.keys.conftest import Counting

PURPOSE = "worklogs"


def at(tenant: Tenant, row: str = "row-1") -> Binding:
    return Binding(tenant.id, "worklogs", "comment", row)


def copy_of_data_keys(keys: TenantKeys, tenant: Tenant) -> list[DataKeyRecord]:
    """What a backup, a replica or the WAL keeps of the tenant's wrapped data keys."""
    records = list(keys.status(tenant.id).data_keys)
    assert records, "the tenant has no data key to copy"
    return records


def on_customer_key(keys: TenantKeys, customer: Counting, tenant: Tenant) -> KeyRef:
    cmk = customer.create_key(tenant_id=tenant.id)
    keys.provision(tenant.id, key=cmk)
    return cmk


def test_copied_data_key_of_a_shredded_cmk_tenant_opens_with_nothing_while_the_customer_key_is_enabled(  # noqa: E501
    tenant_keys: TenantKeys, customer: Counting, copy_layers: KeyLayers, acme: Tenant
) -> None:
    cmk = on_customer_key(tenant_keys, customer, acme)
    tenant_keys.encrypt(b"acme secret", at(acme), purpose=PURPOSE)
    (copy,) = copy_of_data_keys(tenant_keys, acme)
    assert copy.cmk is not None and copy.kek.provider == "local"
    assert len(copy_layers.unwrap(copy)) == 32  # the copy opens before the shred

    tenant_keys.shred(acme.id)

    assert customer.describe(cmk).enabled  # the customer did nothing
    with pytest.raises(KeyDestroyed):
        copy_layers.unwrap(copy)
    # The customer's key alone takes its own layer off, and what is left is the
    # platform's wrap, which nothing can open any more.
    outer = {**wrap_context(acme.id, copy.purpose, copy.version), "layer": "customer"}
    inner = customer.inner.unwrap(copy.cmk, copy.wrapped, context=outer)
    with pytest.raises(KeyDestroyed):
        copy_layers.provider("local").unwrap(
            copy.kek, inner, context=wrap_context(acme.id, copy.purpose, copy.version)
        )


def test_copy_taken_before_a_switch_to_the_customer_key_opens_with_nothing_after_it(
    tenant_keys: TenantKeys, customer: Counting, copy_layers: KeyLayers, acme: Tenant
) -> None:
    tenant_keys.provision(acme.id)
    sealed = tenant_keys.encrypt(b"before the switch", at(acme), purpose=PURPOSE)
    (before,) = copy_of_data_keys(tenant_keys, acme)

    cmk = customer.create_key(tenant_id=acme.id)
    tenant_keys.use_provider(acme.id, cmk)

    assert customer.describe(cmk).enabled
    with pytest.raises(KeyDestroyed):
        copy_layers.unwrap(before)  # its platform KEK version was destroyed by the switch
    (after,) = copy_of_data_keys(tenant_keys, acme)
    assert after.kek.version != before.kek.version and after.cmk is not None
    assert len(copy_layers.unwrap(after)) == 32
    assert tenant_keys.decrypt(sealed, at(acme), purpose=PURPOSE) == b"before the switch"


def test_copy_taken_before_a_kek_rotation_opens_until_the_grace_period_ends(
    grace_keys: TenantKeys, copy_layers: KeyLayers, acme: Tenant, clock: FrozenClock
) -> None:
    grace_keys.provision(acme.id)
    sealed = grace_keys.encrypt(b"rotated", at(acme), purpose=PURPOSE)
    (before,) = copy_of_data_keys(grace_keys, acme)

    grace_keys.rotate_kek(acme.id)
    assert len(copy_layers.unwrap(before)) == 32  # the grace period keeps version 1
    clock.advance(3599)
    assert grace_keys.destroy_retired(acme.id) == []
    assert len(copy_layers.unwrap(before)) == 32

    clock.advance(2)
    assert grace_keys.destroy_retired(acme.id) == [before.kek.version]
    with pytest.raises(KeyDestroyed):
        copy_layers.unwrap(before)
    assert grace_keys.decrypt(sealed, at(acme), purpose=PURPOSE) == b"rotated"


def test_tenant_cache_ttl_bounds_how_long_a_revoked_customer_key_still_reads(
    tenant_keys: TenantKeys, customer: Counting, acme: Tenant, globex: Tenant, clock: FrozenClock
) -> None:
    keys = {t.slug: on_customer_key(tenant_keys, customer, t) for t in (acme, globex)}
    tenant_keys.set_cache_ttl(acme.id, 5)
    sealed = {
        t.slug: tenant_keys.encrypt(t.slug.encode(), at(t), purpose=PURPOSE) for t in (acme, globex)
    }
    for cmk in keys.values():
        customer.disable(cmk)  # inside the customer's KMS: the platform is not told

    clock.advance(4)
    assert tenant_keys.decrypt(sealed["acme"], at(acme), purpose=PURPOSE) == b"acme"
    clock.advance(2)
    with pytest.raises(KeyUnavailable):
        tenant_keys.decrypt(sealed["acme"], at(acme), purpose=PURPOSE)
    # globex keeps the cache's default (60 s): still cached, unaffected by acme's TTL.
    assert tenant_keys.decrypt(sealed["globex"], at(globex), purpose=PURPOSE) == b"globex"
    clock.advance(55)
    with pytest.raises(KeyUnavailable):
        tenant_keys.decrypt(sealed["globex"], at(globex), purpose=PURPOSE)


def other_process(
    engine: Engine, tmp_path: Path, root: RootKey, clock: FrozenClock, state: KeyStateSignal
) -> TenantKeys:
    """A TenantKeys as another process would hold it: its own provider objects over the
    same key files, its own cache, the given key-state signal."""
    providers = [
        LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root),
        LocalKeyProvider(tmp_path / "keys" / "customer.json", root=root, name="customer-local"),
    ]
    return TenantKeys(
        engine,
        providers,
        cache=DataKeyCache(ttl=60),
        clock=clock,
        state=state,
        backoff=0,
        sleep=lambda _: None,
    )


def test_shred_through_one_process_is_seen_by_the_other_on_its_next_use(
    engine: Engine, tmp_path: Path, root: RootKey, clock: FrozenClock, acme: Tenant
) -> None:
    cli = other_process(engine, tmp_path, root, clock, SharedKeyState(tmp_path / "state"))
    service = other_process(engine, tmp_path, root, clock, SharedKeyState(tmp_path / "state"))
    cli.create_schema()
    cli.provision(acme.id)
    sealed = service.encrypt(b"cached in the service", at(acme), purpose=PURPOSE)
    assert service.decrypt(sealed, at(acme), purpose=PURPOSE) == b"cached in the service"

    cli.shred(acme.id)

    with pytest.raises(KeyDestroyed):  # no clock advance: the generation moved
        service.decrypt(sealed, at(acme), purpose=PURPOSE)
    with pytest.raises(KeyDestroyed):
        service.encrypt(b"new", at(acme, "row-2"), purpose=PURPOSE)


def test_without_shared_state_the_other_process_keeps_reading_a_shredded_tenant(
    engine: Engine, tmp_path: Path, root: RootKey, clock: FrozenClock, acme: Tenant
) -> None:
    """The control for the test above: the mechanism, not luck, makes the refusal."""
    cli = other_process(engine, tmp_path, root, clock, ProcessKeyState())
    service = other_process(engine, tmp_path, root, clock, ProcessKeyState())
    cli.create_schema()
    cli.provision(acme.id)
    sealed = service.encrypt(b"cached in the service", at(acme), purpose=PURPOSE)

    cli.shred(acme.id)

    # Stale until the cache TTL: exactly what SharedKeyState exists to prevent.
    assert service.decrypt(sealed, at(acme), purpose=PURPOSE) == b"cached in the service"
    clock.advance(61)
    with pytest.raises(KeyDestroyed):
        service.decrypt(sealed, at(acme), purpose=PURPOSE)


def test_known_limit_an_older_ciphertext_written_back_to_its_own_cell_opens_to_the_old_value(
    tenant_keys: TenantKeys, acme: Tenant
) -> None:
    """Documented limit: the binding (tenant, table, column, row) stops a ciphertext from
    moving to another place, not from going back in time in its own place. Someone who
    can write the column can restore an earlier value of the same cell undetected (and
    after a KEK rotation too: data keys are re-wrapped, not changed)."""
    tenant_keys.provision(acme.id)
    old = tenant_keys.encrypt(b"approved: no", at(acme), purpose=PURPOSE)
    new = tenant_keys.encrypt(b"approved: yes", at(acme), purpose=PURPOSE)
    assert tenant_keys.decrypt(new, at(acme), purpose=PURPOSE) == b"approved: yes"
    tenant_keys.rotate_kek(acme.id)
    assert tenant_keys.decrypt(old, at(acme), purpose=PURPOSE) == b"approved: no"


def test_a_second_rotation_does_not_postpone_the_first_ones_destruction(
    grace_keys: TenantKeys, acme: Tenant, clock: FrozenClock
) -> None:
    grace_keys.provision(acme.id)
    grace_keys.encrypt(b"x", at(acme), purpose=PURPOSE)
    grace_keys.rotate_kek(acme.id)  # version 1 due in an hour
    clock.advance(3000)
    grace_keys.rotate_kek(acme.id)  # version 2 due in an hour; 1 keeps its time
    clock.advance(700)  # 3,700 s after the first rotation
    assert grace_keys.destroy_retired(acme.id) == ["1"]
    status = grace_keys.status(acme.id)
    assert status.kek is not None and [v for v, _ in status.kek.retiring] == ["2"]


class RotatingMidUnwrap:
    """A platform provider whose first unwrap lets another process rotate the KEK (and
    destroy the version being unwrapped) in between the load and the unwrap."""

    def __init__(self, inner: Counting, rotate: object) -> None:
        self.inner, self.name, self._rotate = inner, inner.name, rotate
        self.raced = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: object) -> bytes:
        if not self.raced:
            self.raced = True
            self._rotate()  # type: ignore[operator]
        return self.inner.unwrap(key, wrapped, context=context)  # type: ignore[arg-type]


def test_a_read_racing_a_rotation_in_another_process_reads_again_instead_of_410(
    engine: Engine,
    platform: Counting,
    customer: Counting,
    clock: FrozenClock,
    tmp_path: Path,
    acme: Tenant,
) -> None:
    state = tmp_path / "key-state"
    writer = TenantKeys(
        engine,
        [platform, customer],
        clock=clock,  # type: ignore[list-item]
        state=SharedKeyState(state),
    )
    writer.create_schema()
    writer.provision(acme.id)
    sealed = writer.encrypt(b"live tenant", at(acme), purpose=PURPOSE)
    racing = RotatingMidUnwrap(platform, lambda: writer.rotate_kek(acme.id))
    reader = TenantKeys(
        engine,
        [racing, customer],
        clock=clock,  # type: ignore[list-item]
        state=SharedKeyState(state),
    )
    # The reader loads the data key wrapped under KEK version 1; before it unwraps, the
    # writer re-wraps under version 2 and destroys version 1. Not "data destroyed": the
    # reader sees the new generation and reads again.
    assert reader.decrypt(sealed, at(acme), purpose=PURPOSE) == b"live tenant"
    assert racing.raced
