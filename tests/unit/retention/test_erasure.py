"""Right to erasure: the tenant's personal data goes, its keys are shredded, others stay."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, Table

from tenancy.clock import FrozenClock
from tenancy.context import bind
from tenancy.errors import KeyDestroyed, TenantContextConflict
from tenancy.events import MemorySink
from tenancy.exports import ExportRecord, ExportService
from tenancy.keys import TenantKeys
from tenancy.retention import DEFAULT_ERASURE_TABLES, IdentityMapping, erase_tenant_personal_data
from tenancy.tenants import Tenant, TenantRegistry
from tests.unit.exports.conftest import Note, Notes, ctx_of
from tests.unit.retention.conftest import add_mapping, count

NOTES = Note.__table__
assert isinstance(NOTES, Table)
TABLES = (*DEFAULT_ERASURE_TABLES, NOTES)  # the library's, and the application's own


def fill(
    tenant: Tenant,
    notes: Notes,
    exports: ExportService,
    engine: Engine,
    clock: FrozenClock,
) -> None:
    with bind(ctx_of(tenant)):
        for n in range(2):
            notes.add(f"entry {n}", comment="personal")
        exports.create("json")
    add_mapping(engine, tenant.id, notified=clock.now(), created=clock.now())


@pytest.fixture
def filled(
    notes: Notes,
    exports: ExportService,
    mappings: Engine,
    engine: Engine,
    acme: Tenant,
    globex: Tenant,
    clock: FrozenClock,
) -> None:
    fill(acme, notes, exports, engine, clock)
    fill(globex, notes, exports, engine, clock)


@pytest.mark.usefixtures("filled")
def test_erasure_deletes_the_tenants_rows_only_and_shreds_its_keys(
    engine: Engine,
    tenant_keys: TenantKeys,
    notes: Notes,
    acme: Tenant,
    globex: Tenant,
    events: MemorySink,
    clock: FrozenClock,
) -> None:
    report = erase_tenant_personal_data(
        acme.id,
        engine=engine,
        keys=tenant_keys,
        tables=TABLES,
        events=events,
        clock=clock,
        requested_by="dpo@acme",
    )
    assert report.deleted == {"tenancy_identity_mappings": 1, "tenancy_exports": 1, "notes": 2}
    assert report.keys == "shredded"
    for model in (Note, IdentityMapping, ExportRecord):
        assert count(engine, model, acme.id) == 0
    assert count(engine, Note, globex.id) == 2
    assert count(engine, IdentityMapping, globex.id) == 1
    assert count(engine, ExportRecord, globex.id) == 1

    kek = tenant_keys.status(acme.id).kek
    assert kek is not None and kek.state == "destroyed"
    with bind(ctx_of(acme)), pytest.raises(KeyDestroyed):
        notes.add("after", comment="x")
    with bind(ctx_of(globex)):  # the other tenant still reads its encrypted data
        assert {n["comment"] for n in notes.list()} == {"personal"}

    done = [e for e in events.events if e.action == "erasure.completed"]
    assert len(done) == 1
    assert (done[0].tenant_id, done[0].actor) == (acme.id, "dpo@acme")
    assert done[0].details == {
        "deleted.tenancy_identity_mappings": "1",
        "deleted.tenancy_exports": "1",
        "deleted.notes": "2",
        "keys": "shredded",
    }
    assert "key.destroy" in events.actions()


@pytest.mark.usefixtures("filled")
def test_erasure_is_idempotent(
    engine: Engine, tenant_keys: TenantKeys, acme: Tenant, events: MemorySink
) -> None:
    erase_tenant_personal_data(
        acme.id, engine=engine, keys=tenant_keys, tables=TABLES, events=events
    )
    again = erase_tenant_personal_data(
        acme.id, engine=engine, keys=tenant_keys, tables=TABLES, events=events
    )
    assert again.total == 0 and again.keys == "already-destroyed"


def test_a_tenant_without_keys_is_erased_too(
    engine: Engine,
    tenant_keys: TenantKeys,
    mappings: Engine,
    registry: TenantRegistry,
    clock: FrozenClock,
) -> None:
    initech = registry.provision("initech", region="eu-central-1")
    add_mapping(engine, initech.id, notified=None, created=clock.now())
    report = erase_tenant_personal_data(
        initech.id, engine=engine, keys=tenant_keys, tables=(IdentityMapping.__table__,)
    )  # type: ignore[arg-type]
    assert report.deleted == {"tenancy_identity_mappings": 1} and report.keys == "none"


@pytest.mark.usefixtures("filled")
def test_erasure_refuses_to_run_for_another_tenant_than_the_bound_one(
    engine: Engine, tenant_keys: TenantKeys, acme: Tenant, globex: Tenant
) -> None:
    with bind(ctx_of(globex)), pytest.raises(TenantContextConflict):
        erase_tenant_personal_data(acme.id, engine=engine, keys=tenant_keys, tables=TABLES)
    assert count(engine, Note, acme.id) == 2
