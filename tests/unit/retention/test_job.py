"""The retention job with a frozen clock: exports go on day 12, mappings on day 14."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table

from tenancy.clock import FrozenClock
from tenancy.context import bind
from tenancy.errors import ConfigurationError
from tenancy.events import MemorySink, SecurityEvent
from tenancy.exports import ExportGone, ExportRecord, ExportService
from tenancy.retention import (
    DEFAULT_RULES,
    EXPORTS_RULE,
    MAPPINGS_RULE,
    IdentityMapping,
    RetentionJob,
    RetentionRule,
)
from tenancy.tenants import Tenant
from tests.unit.exports.conftest import ctx_of
from tests.unit.retention.conftest import add_mapping, count

DAY = timedelta(days=1).total_seconds()


def purged(events: MemorySink) -> list[SecurityEvent]:
    return [e for e in events.events if e.action == "retention.purged"]


def job(engine: Engine, clock: FrozenClock, events: MemorySink, **kwargs: object) -> RetentionJob:
    return RetentionJob(engine, DEFAULT_RULES, clock=clock, events=events, **kwargs)  # type: ignore[arg-type]


def test_exports_are_kept_on_day_11_and_deleted_on_day_12(
    exports: ExportService,
    mappings: Engine,
    engine: Engine,
    acme: Tenant,
    globex: Tenant,
    clock: FrozenClock,
    events: MemorySink,
) -> None:
    for tenant in (acme, globex):
        with bind(ctx_of(tenant)):
            exports.create("json")
    clock.advance(11 * DAY)
    assert job(engine, clock, events).run().deleted("exports") == 0
    assert count(engine, ExportRecord) == 2
    clock.advance(DAY - 1)  # one second short of 12 days
    assert job(engine, clock, events).run().deleted("exports") == 0
    clock.advance(1)
    report = job(engine, clock, events).run()
    assert report.deleted("exports", acme.id) == 1 and report.deleted("exports", globex.id) == 1
    assert count(engine, ExportRecord) == 0
    last = {e.tenant_id: e for e in purged(events)[-2:]}
    assert last[acme.id].details["deleted"] == "1"
    assert last[acme.id].details["data_class"] == "exports"
    assert last[acme.id].details["complete"] == "true"
    assert last[acme.id].actor == "tenancy-retention"


def test_a_link_still_in_its_window_finds_the_export_gone_after_retention(
    engine: Engine,
    notes: object,
    tenant_keys: object,
    mappings: Engine,
    acme: Tenant,
    clock: FrozenClock,
    events: MemorySink,
) -> None:
    from tests.unit.exports.conftest import export_service

    long_window = export_service(
        engine,
        notes,
        tenant_keys,
        clock,
        events,  # type: ignore[arg-type]
        window=timedelta(days=30),
    )
    with bind(ctx_of(acme)):
        token = long_window.create("csv").token
    clock.advance(12 * DAY)
    job(engine, clock, events).run()
    with bind(ctx_of(acme)), pytest.raises(ExportGone):
        long_window.download(token)


def test_mappings_are_kept_on_day_13_and_deleted_on_day_14_after_first_notice(
    mappings: Engine,
    exports: ExportService,
    engine: Engine,
    acme: Tenant,
    clock: FrozenClock,
    events: MemorySink,
) -> None:
    t0 = clock.now()
    notified = add_mapping(engine, acme.id, notified=t0, created=t0 - timedelta(days=30))
    add_mapping(engine, acme.id, notified=t0 + timedelta(days=2), created=t0)
    never = add_mapping(engine, acme.id, notified=None, created=t0 - timedelta(days=365))
    clock.advance(13 * DAY)
    assert job(engine, clock, events).run().deleted("mappings") == 0
    clock.advance(DAY)
    report = job(engine, clock, events).run()
    assert report.deleted("mappings", acme.id) == 1
    assert count(engine, IdentityMapping) == 2
    clock.advance(2 * DAY)
    assert job(engine, clock, events).run().deleted("mappings") == 1
    with engine.connect() as conn:
        left = conn.execute(IdentityMapping.__table__.select()).all()
    assert [row.id for row in left] == [never]  # never notified: never due
    assert notified not in [row.id for row in left]


def test_a_second_run_deletes_nothing_more(
    mappings: Engine,
    exports: ExportService,
    engine: Engine,
    acme: Tenant,
    clock: FrozenClock,
    events: MemorySink,
) -> None:
    for _ in range(3):
        add_mapping(engine, acme.id, notified=clock.now(), created=clock.now())
    clock.advance(14 * DAY)
    first = job(engine, clock, events, batch_size=2).run()
    assert first.deleted("mappings") == 3
    before = len(purged(events))
    assert job(engine, clock, events, batch_size=2).run().total == 0
    assert len(purged(events)) == before  # tenants read from the tables: none has rows due
    assert job(engine, clock, events, tenants=lambda: [acme.id]).run().total == 0
    assert {e.details["deleted"] for e in purged(events)[before:]} == {"0"}
    assert count(engine, IdentityMapping) == 0


def test_an_interrupted_run_is_finished_exactly_by_the_next_one(
    mappings: Engine,
    exports: ExportService,
    engine: Engine,
    acme: Tenant,
    globex: Tenant,
    clock: FrozenClock,
    events: MemorySink,
) -> None:
    t0 = clock.now()
    for _ in range(5):
        add_mapping(engine, acme.id, notified=t0, created=t0)
    for _ in range(2):
        add_mapping(engine, globex.id, notified=t0, created=t0)
    keep = add_mapping(engine, acme.id, notified=t0 + timedelta(days=1), created=t0)
    clock.advance(14 * DAY)

    def crash(tenant_id: str, data_class: str, deleted: int) -> None:
        raise RuntimeError("the worker was killed")

    with pytest.raises(RuntimeError):
        job(engine, clock, events, batch_size=2, after_batch=crash).run()
    # The first batch of the first tenant is committed; nothing else is touched.
    assert count(engine, IdentityMapping) == 8 - 2
    interrupted = purged(events)[-1]
    assert interrupted.details["complete"] == "false"
    assert interrupted.details["deleted"] == "2"

    batches: list[tuple[str, str, int]] = []
    report = job(
        engine, clock, events, batch_size=2, after_batch=lambda *batch: batches.append(batch)
    ).run()
    assert report.deleted("mappings") == 5  # 7 due in all, 2 deleted before the crash
    assert count(engine, IdentityMapping, acme.id) == 1
    assert count(engine, IdentityMapping, globex.id) == 0
    with engine.connect() as conn:
        assert conn.execute(IdentityMapping.__table__.select()).one().id == keep
    assert all(n <= 2 for _, _, n in batches)
    assert job(engine, clock, events, batch_size=2).run().total == 0


def test_listed_tenants_each_get_an_event_per_data_class_even_with_nothing_due(
    mappings: Engine,
    exports: ExportService,
    engine: Engine,
    acme: Tenant,
    globex: Tenant,
    clock: FrozenClock,
    events: MemorySink,
) -> None:
    report = job(engine, clock, events, tenants=lambda: [acme.id, globex.id]).run()
    assert report.total == 0
    seen = {(e.tenant_id, e.details["data_class"]) for e in purged(events)}
    assert seen == {(t, c) for t in (acme.id, globex.id) for c in ("exports", "mappings")}
    assert "system_scope.entered" in events.actions()
    entered = next(e for e in events.events if e.action == "system_scope.entered")
    assert entered.reason == "retention"


def test_the_default_rules_mirror_the_platform() -> None:
    assert (EXPORTS_RULE.data_class, EXPORTS_RULE.keep) == ("exports", timedelta(days=12))
    assert EXPORTS_RULE.timestamp_column == "created_at"
    assert (MAPPINGS_RULE.data_class, MAPPINGS_RULE.keep) == ("mappings", timedelta(days=14))
    assert MAPPINGS_RULE.timestamp_column == "first_notified_at"


def test_rules_refuse_tables_that_are_not_tenant_owned(engine: Engine) -> None:
    meta = MetaData()
    loose = Table(
        "loose",
        meta,
        Column("id", Integer, primary_key=True),
        Column("tenant_id", String(36)),
        Column("at", String(30)),
    )
    with pytest.raises(ConfigurationError, match="lead the primary key"):
        RetentionRule("loose", loose, "at", timedelta(days=1))
    with pytest.raises(ConfigurationError, match="positive"):
        RetentionRule("exports", EXPORTS_RULE.table, "created_at", timedelta(0))
    with pytest.raises(ConfigurationError, match="same data class"):
        RetentionJob(engine, [EXPORTS_RULE, EXPORTS_RULE])
