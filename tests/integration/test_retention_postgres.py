"""Retention, erasure and exports on PostgreSQL under forced RLS, as the application role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, MetaData, func, select

from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext, bind
from tenancy.events import MemorySink
from tenancy.exports import ExportRecord, ExportService
from tenancy.exports.model import ExportBase
from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.store import metadata as key_metadata
from tenancy.retention import (
    DEFAULT_ERASURE_TABLES,
    IdentityMapping,
    RetentionJob,
    erase_tenant_personal_data,
)
from tenancy.retention.model import RetentionBase
from tenancy.scoping.rls import enable_rls, grant_app_role, tenant_transaction
from tests.support.postgres import app_role_database
from tests.unit.exports.conftest import FIELDS, Note, Notes
from tests.unit.exports.conftest import Base as NotesBase

pytestmark = pytest.mark.postgres
A, B = str(uuid.uuid4()), str(uuid.uuid4())
METADATA: tuple[MetaData, ...] = (
    ExportBase.metadata,
    RetentionBase.metadata,
    NotesBase.metadata,
    key_metadata,
)


@pytest.fixture
def pg() -> Iterator[tuple[Engine, Engine]]:
    def setup(conn: Connection, role: str) -> None:
        tables = []
        for meta in METADATA:
            meta.create_all(conn)
            tables += [t for t in meta.sorted_tables if "tenant_id" in t.c]
        enable_rls(conn, tables)
        grant_app_role(conn, role, tables)

    with app_role_database(setup) as pair:
        yield pair


def ctx(tenant_id: str) -> TenantContext:
    return TenantContext(
        tenant_id,
        tenant_id[:8],
        "eu-central-1",
        Principal("https://issuer.test", tenant_id, "alice"),
        "rid",
    )


def rows(owner: Engine, model: type[object], tenant_id: str) -> int:
    with owner.connect() as conn:  # the owner (superuser) sees every tenant's rows
        return int(
            conn.execute(
                select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
            ).scalar_one()
        )  # type: ignore[attr-defined]


def test_retention_and_erasure_work_as_the_app_role_under_rls(
    pg: tuple[Engine, Engine], tmp_path: Path
) -> None:
    owner, app = pg
    clock, events = FrozenClock(datetime.now(UTC).replace(microsecond=0)), MemorySink()
    root = RootKey.load_or_create(tmp_path / "root.key")
    keys = TenantKeys(
        app, [LocalKeyProvider(tmp_path / "keks.json", root=root)], clock=clock, events=events
    )
    notes = Notes(app, keys=keys)
    exports = ExportService(
        app,
        source=notes.list,
        fields=FIELDS,
        keys=keys,
        signing_key=b"s" * 32,
        clock=clock,
        events=events,
    )
    for tenant in (A, B):
        keys.provision(tenant)
        with bind(ctx(tenant)):
            notes.add("d", comment="c")
            exports.create("csv")
        with tenant_transaction(app, tenant) as conn:
            conn.execute(
                IdentityMapping.__table__.insert().values(  # type: ignore[attr-defined]
                    tenant_id=tenant,
                    id=str(uuid.uuid4()),
                    external_id="x",
                    email="e@x.test",
                    created_at=clock.now(),
                    first_notified_at=clock.now(),
                )
            )
    clock.advance(timedelta(days=14).total_seconds())

    # Discovery reads the tables without a tenant: under forced RLS it sees nothing.
    assert RetentionJob(app, clock=clock, events=events).run().total == 0
    report = RetentionJob(app, clock=clock, events=events, tenants=lambda: [A, B]).run()
    assert report.deleted("exports") == 2 and report.deleted("mappings") == 2
    for tenant in (A, B):
        assert rows(owner, ExportRecord, tenant) == 0
        assert rows(owner, IdentityMapping, tenant) == 0

    erased = erase_tenant_personal_data(
        A,
        engine=app,
        keys=keys,
        tables=(*DEFAULT_ERASURE_TABLES, Note.__table__),  # type: ignore[arg-type]
        events=events,
        clock=clock,
    )
    assert erased.deleted["notes"] == 1 and erased.keys == "shredded"
    assert rows(owner, Note, A) == 0 and rows(owner, Note, B) == 1
