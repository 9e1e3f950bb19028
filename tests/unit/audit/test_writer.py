"""The writer: concurrent emitters, many processes, shutdown and crashes lose nothing
committed; export and reading."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from tenancy.audit import (
    PLATFORM_CHAIN,
    AuditLog,
    AuditRecord,
    audit_events,
    load_audit_key,
    write_audit_key,
)
from tenancy.clock import FrozenClock
from tenancy.errors import ConfigurationError
from tenancy.events import EventSink, SecurityEvent
from tests.unit.audit.conftest import KEY, TENANT_A, TENANT_B, EventFactory

ROOT = Path(__file__).resolve().parents[3]


def test_is_an_event_sink(audit: AuditLog) -> None:
    sink: EventSink = audit
    assert callable(sink.emit)


def test_record_fields_and_platform_chain(audit: AuditLog, event: EventFactory) -> None:
    audit.emit(
        event(
            action="tenant.suspended",
            actor="ops",
            reason="unpaid",
            request_id="r-1",
            details={"b": "2", "a": "1"},
        )
    )
    audit.emit(event(action="system_scope.used", tenant_id=None))
    audit.flush()
    [record] = audit.events(TENANT_A)
    assert (
        record.seq,
        record.action,
        record.actor,
        record.reason,
        record.request_id,
        dict(record.details),
        record.v,
    ) == (1, "tenant.suspended", "ops", "unpaid", "r-1", {"a": "1", "b": "2"}, 1)
    assert record.hash == record.computed_hash() and record.prev_hash == "0" * 64
    assert [r.action for r in audit.events(PLATFORM_CHAIN)] == ["system_scope.used"]
    assert audit.verify(PLATFORM_CHAIN).ok


def test_export_jsonl(audit: AuditLog, event: EventFactory) -> None:
    for i in range(3):
        audit.emit(event(details={"i": str(i)}))
    audit.flush()
    out = io.StringIO()
    assert audit.export_jsonl(TENANT_A, out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    assert all(
        AuditRecord(**{k: v for k, v in line.items()}).computed_hash() == line["hash"]
        for line in lines
    )
    assert out.getvalue().splitlines()[0] == json.dumps(
        lines[0], sort_keys=True, separators=(",", ":")
    )


def test_concurrent_emitters_make_complete_valid_chains(
    audit: AuditLog, event: EventFactory
) -> None:
    threads, per_thread = 16, 250
    tenants = [TENANT_A, TENANT_B, None]

    def work(n: int) -> None:
        for i in range(per_thread):
            audit.emit(event(tenant_id=tenants[(n + i) % 3], request_id=f"{n}-{i}"))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    audit.flush()
    total = 0
    for tenant in (TENANT_A, TENANT_B, PLATFORM_CHAIN):
        result = audit.verify(tenant)
        assert result.ok, result
        total += result.records
        # each thread's events keep their emission order within a chain
        seen: dict[str, int] = {}
        for r in audit.events(tenant):
            n, i = map(int, (r.request_id or "").split("-"))
            assert seen.get(str(n), -1) < i
            seen[str(n)] = i
    assert total == threads * per_thread


def test_two_logs_on_one_database_interleave_validly(
    engine: Engine, audit: AuditLog, clock: FrozenClock, event: EventFactory
) -> None:
    other = AuditLog(engine, KEY, clock=clock, flush_interval=0.0, batch_max=7)
    try:

        def work(log: AuditLog) -> None:
            for i in range(200):
                log.emit(event(details={"i": str(i)}))

        workers = [threading.Thread(target=work, args=(log,)) for log in (audit, other) * 3]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        other.flush()
        audit.flush()
    finally:
        other.close()
    result = audit.verify(TENANT_A)
    assert result.ok and result.records == 1200, result


def test_close_writes_everything_accepted(
    engine: Engine, clock: FrozenClock, event: EventFactory
) -> None:
    log = AuditLog(engine, KEY, clock=clock, flush_interval=10.0)
    log.create_schema()
    for _ in range(1234):
        log.emit(event())
    log.close()
    log.emit(event())  # after close: written inline, not dropped
    reader = AuditLog(engine, KEY, clock=clock)
    try:
        result = reader.verify(TENANT_A)
    finally:
        reader.close()
    assert result.ok and result.records == 1235, result


def test_emit_durable_returns_the_committed_record(audit: AuditLog, event: EventFactory) -> None:
    audit.emit(event())
    record = audit.emit_durable(event(action="support.grant.approved"))
    assert (record.seq, record.action) == (2, "support.grant.approved")
    assert [r.hash for r in audit.events(TENANT_A)][-1] == record.hash


_CHILD = """
import os, signal, sys
from datetime import UTC, datetime
from sqlalchemy import create_engine
from tenancy.audit import AuditLog
from tenancy.events import SecurityEvent

url, mode, tenant, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
log = AuditLog(create_engine(url, connect_args={"timeout": 30}), bytes(range(32)),
               flush_interval=float(os.environ.get("FLUSH", "0.05")))
log.create_schema()
now = datetime.now(UTC)
for i in range(count):
    log.emit(SecurityEvent("bench.request", now, tenant_id=tenant, details={"i": str(i)}))
if mode == "durable-then-kill":
    record = log.emit_durable(SecurityEvent("purge.done", now, tenant_id=tenant))
    print(record.seq, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "kill-unflushed":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "exit":
    sys.exit(0)  # atexit closes the log
"""


def _child(
    db: Path, mode: str, count: int, tenant: str = TENANT_A, flush: str = "0.05"
) -> subprocess.Popen[str]:
    env = {**os.environ, "FLUSH": flush, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, f"sqlite:///{db}", mode, tenant, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _verify(db: Path, tenant: str = TENANT_A) -> tuple[bool, int, list[AuditRecord]]:
    engine = create_engine(f"sqlite:///{db}")
    log = AuditLog(engine, KEY)
    try:
        result = log.verify(tenant)
        return result.ok, result.records, log.events(tenant)
    finally:
        log.close()
        engine.dispose()


def test_kill_after_durable_emit_loses_no_committed_event(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    child = _child(db, "durable-then-kill", 300, flush="5")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    committed_seq = int(out.split()[0])
    ok, count, records = _verify(db)
    assert ok and committed_seq == 301
    assert count >= committed_seq  # the durable event and all accepted before it
    assert records[300].action == "purge.done"


def test_kill_before_flush_leaves_a_valid_prefix(tmp_path: Path) -> None:
    """Accepted but uncommitted events may be lost to SIGKILL: never half a batch."""
    db = tmp_path / "crash.db"
    child = _child(db, "kill-unflushed", 2000, flush="0.001")
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    ok, count, records = _verify(db)
    assert ok
    assert [int(r.details["i"]) for r in records] == list(range(count))


def test_normal_exit_writes_everything_via_atexit(tmp_path: Path) -> None:
    db = tmp_path / "exit.db"
    child = _child(db, "exit", 777, flush="10")
    child.communicate(timeout=60)
    assert child.returncode == 0
    ok, count, _ = _verify(db)
    assert ok and count == 777


def test_processes_writing_one_database_make_one_valid_chain(tmp_path: Path) -> None:
    db = tmp_path / "multi.db"
    AuditLog(create_engine(f"sqlite:///{db}"), KEY).create_schema()
    children = [_child(db, "exit", 400, flush="0.001") for _ in range(4)]
    for child in children:
        child.communicate(timeout=120)
        assert child.returncode == 0
    ok, count, _ = _verify(db)
    assert ok and count == 1600


def test_key_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANCY_AUDIT_KEY", KEY.hex())
    assert load_audit_key() == KEY
    path = tmp_path / "audit.key"
    key = write_audit_key(path)
    assert load_audit_key(path) == key
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="0600"):
        load_audit_key(path)
    monkeypatch.delenv("TENANCY_AUDIT_KEY")
    with pytest.raises(ConfigurationError):
        load_audit_key()
    with pytest.raises(ConfigurationError, match="at least"):
        load_audit_key(b"short")


def test_rows_hold_no_key(audit: AuditLog, engine: Engine, event: EventFactory) -> None:
    audit.emit_durable(event())
    with engine.connect() as conn:
        row = conn.execute(audit_events.select()).first()
    assert row is not None and KEY.hex() not in repr(tuple(row))


def test_emit_from_the_request_path_never_raises(engine: Engine, clock: FrozenClock) -> None:
    log = AuditLog(engine, KEY, clock=clock, retry_interval=0.01)  # no schema: writes fail
    log.emit(SecurityEvent("auth.refused", clock.now()))
    log.close(timeout=5)
