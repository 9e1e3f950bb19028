"""Each kind of tampering is detected, at the first bad position, with its kind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from tenancy.audit import AuditLog, Damage, audit_events, audit_heads
from tenancy.audit.record import chain
from tenancy.audit.store import insert_records
from tests.unit.audit.conftest import KEY, TENANT_A, TENANT_B, EventFactory

N = 8


@pytest.fixture
def filled(audit: AuditLog, event: EventFactory) -> AuditLog:
    for i in range(N):
        audit.emit(event(actor=f"user{i}", details={"i": str(i)}))
    audit.emit(event(tenant_id=TENANT_B))
    audit.flush()
    return audit


def sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_intact_chain_verifies(filled: AuditLog) -> None:
    result = filled.verify(TENANT_A)
    assert result.ok, result
    assert result.records == N and result.head_seq == N
    assert [r.seq for r in filled.events(TENANT_A)] == list(range(1, N + 1))
    assert filled.verify(TENANT_B).ok


def test_empty_chain_verifies(audit: AuditLog) -> None:
    assert audit.verify(TENANT_A).ok


def test_changed_field_detected_at_its_position(filled: AuditLog, engine: Engine) -> None:
    sql(
        engine,
        "UPDATE tenancy_audit_events SET actor = 'mallory' WHERE tenant_id = :t AND seq = 4",
        t=TENANT_A,
    )
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.CHANGED, 4)


def test_changed_and_rehashed_detected_at_its_position(filled: AuditLog, engine: Engine) -> None:
    record = filled.events(TENANT_A)[2]  # seq 3
    forged = chain(TENANT_A, 3, record.prev_hash, _event_of(record, reason="nothing to see"))
    sql(
        engine,
        "UPDATE tenancy_audit_events SET reason = :r, hash = :h WHERE tenant_id = :t AND seq = 3",
        r=forged.reason,
        h=forged.hash,
        t=TENANT_A,
    )
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.CHANGED, 3)


def test_deleted_detected_at_its_position(filled: AuditLog, engine: Engine) -> None:
    sql(engine, "DELETE FROM tenancy_audit_events WHERE tenant_id = :t AND seq = 5", t=TENANT_A)
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.DELETED, 5)


def test_deleted_and_renumbered_detected_at_its_position(filled: AuditLog, engine: Engine) -> None:
    sql(engine, "DELETE FROM tenancy_audit_events WHERE tenant_id = :t AND seq = 2", t=TENANT_A)
    for seq in range(3, N + 1):
        sql(
            engine,
            "UPDATE tenancy_audit_events SET seq = seq - 1 WHERE tenant_id = :t AND seq = :s",
            t=TENANT_A,
            s=seq,
        )
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.DELETED, 2)


def test_truncated_tail_detected(filled: AuditLog, engine: Engine) -> None:
    sql(engine, "DELETE FROM tenancy_audit_events WHERE tenant_id = :t AND seq > 6", t=TENANT_A)
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.TRUNCATED, 7)


def test_reordered_detected_at_first_moved_position(filled: AuditLog, engine: Engine) -> None:
    # swap seq 3 and 6 (through a free value: the primary key forbids duplicates)
    sql(
        engine,
        "UPDATE tenancy_audit_events SET seq = 1000 WHERE tenant_id = :t AND seq = 3",
        t=TENANT_A,
    )
    sql(
        engine,
        "UPDATE tenancy_audit_events SET seq = 3 WHERE tenant_id = :t AND seq = 6",
        t=TENANT_A,
    )
    sql(
        engine,
        "UPDATE tenancy_audit_events SET seq = 6 WHERE tenant_id = :t AND seq = 1000",
        t=TENANT_A,
    )
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.REORDERED, 3)


def test_adjacent_swap_detected_as_reordered(filled: AuditLog, engine: Engine) -> None:
    sql(
        engine,
        "UPDATE tenancy_audit_events SET seq = 1000 WHERE tenant_id = :t AND seq = 4",
        t=TENANT_A,
    )
    sql(
        engine,
        "UPDATE tenancy_audit_events SET seq = 4 WHERE tenant_id = :t AND seq = 5",
        t=TENANT_A,
    )
    sql(
        engine,
        "UPDATE tenancy_audit_events SET seq = 5 WHERE tenant_id = :t AND seq = 1000",
        t=TENANT_A,
    )
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.REORDERED, 4)


def test_inserted_detected_at_its_position(
    filled: AuditLog, engine: Engine, event: EventFactory
) -> None:
    # a well-formed forgery at position 4, later records renumbered to make room
    records = filled.events(TENANT_A)
    for seq in range(N, 3, -1):
        sql(
            engine,
            "UPDATE tenancy_audit_events SET seq = seq + 1 WHERE tenant_id = :t AND seq = :s",
            t=TENANT_A,
            s=seq,
        )
    forged = chain(TENANT_A, 4, records[2].hash, event(action="support.grant.approved"))
    with engine.begin() as conn:
        insert_records(conn, [forged])
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.INSERTED, 4)


def test_appended_forgery_detected(filled: AuditLog, engine: Engine, event: EventFactory) -> None:
    last = filled.events(TENANT_A)[-1]
    with engine.begin() as conn:
        insert_records(conn, [chain(TENANT_A, N + 1, last.hash, event())])
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.INSERTED, N + 1)


def test_rewritten_chain_without_key_fails_on_head(filled: AuditLog, engine: Engine) -> None:
    """Whoever can write the tables but lacks the key rewrites every hash consistently:
    the chain checks out, the signed head does not."""
    records = filled.events(TENANT_A)
    prev = records[0].prev_hash
    rewritten = []
    for r in records:
        fresh = chain(TENANT_A, r.seq, prev, _event_of(r, actor="mallory"))
        rewritten.append(fresh)
        prev = fresh.hash
    with engine.begin() as conn:
        conn.execute(audit_events.delete().where(audit_events.c.tenant_id == TENANT_A))
        insert_records(conn, rewritten)
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.HEAD_MISMATCH, N)
    # moving the head along with a MAC made without the key is no better
    sql(
        engine,
        "UPDATE tenancy_audit_heads SET hash = :h, mac = :m WHERE tenant_id = :t",
        h=prev,
        m="0" * 64,
        t=TENANT_A,
    )
    result = filled.verify(TENANT_A)
    assert (result.damage, result.position) == (Damage.HEAD_MISMATCH, N)


def test_deleted_head_detected(filled: AuditLog, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(audit_heads.delete().where(audit_heads.c.tenant_id == TENANT_A))
    result = filled.verify(TENANT_A)
    assert result.damage is Damage.HEAD_MISSING


def test_other_key_does_not_verify(filled: AuditLog, engine: Engine) -> None:
    other = AuditLog(engine, bytes(32), flush_interval=0.01)
    try:
        assert other.verify(TENANT_A).damage is Damage.HEAD_MISMATCH
    finally:
        other.close()
    assert filled.verify(TENANT_A).ok and bytes(32) != KEY


def test_writer_does_not_resign_a_forged_head(
    filled: AuditLog, engine: Engine, event: EventFactory
) -> None:
    sql(
        engine,
        "UPDATE tenancy_audit_heads SET mac = :m WHERE tenant_id = :t",
        m="f" * 64,
        t=TENANT_A,
    )
    filled.emit_durable(event())
    assert filled.verify(TENANT_A).damage is Damage.HEAD_MISMATCH


def _event_of(record: Any, **changes: Any) -> Any:
    from datetime import datetime

    from tenancy.events import SecurityEvent

    values = {
        "action": record.action,
        "at": datetime.fromisoformat(record.at),
        "tenant_id": record.tenant_id,
        "actor": record.actor,
        "reason": record.reason,
        "request_id": record.request_id,
        "details": dict(record.details),
    }
    values.update(changes)
    return SecurityEvent(**values)
