"""The audit log on PostgreSQL under forced RLS, written and read by the application role
(NOSUPERUSER NOBYPASSRLS, DML only): tenants see only their own trail, concurrent
writers keep chains valid, and a chain rewritten by the app role fails verification."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import ProgrammingError

from tenancy.audit import TABLES, AuditLog, Damage, audit_events, audit_heads, metadata
from tenancy.audit.record import chain
from tenancy.audit.store import insert_records
from tenancy.events import SecurityEvent
from tenancy.scoping.rls import migration_statements, tenant_transaction
from tests.support.postgres import app_role_database

pytestmark = pytest.mark.postgres

KEY = bytes(range(32))
A = "00000000-0000-4000-8000-0000000000aa"
B = "00000000-0000-4000-8000-0000000000bb"


@pytest.fixture
def app_engine() -> Iterator[Engine]:
    def setup(conn: Connection, role: str) -> None:
        metadata.create_all(conn)
        for statement in migration_statements(TABLES, conn.dialect, role):
            conn.execute(text(statement))

    with app_role_database(setup, prefix="tenancy_audit") as (_, app):
        yield app


def _event(tenant: str, **kwargs: str) -> SecurityEvent:
    return SecurityEvent("authz.denied", datetime.now(UTC), tenant_id=tenant, details=kwargs)


def test_tenant_reads_only_its_own_trail(app_engine: Engine) -> None:
    with AuditLog(app_engine, KEY, flush_interval=0.01) as log:
        for i in range(5):
            log.emit(_event(A, i=str(i)))
            log.emit(_event(B, i=str(i)))
        log.flush()
        assert log.verify(A).ok and log.verify(B).ok
        assert len(log.events(A)) == 5
    for tenant in (A, B):
        with tenant_transaction(app_engine, tenant) as conn:
            seen = set(conn.execute(select(audit_events.c.tenant_id)).scalars())
            heads = set(conn.execute(select(audit_heads.c.tenant_id)).scalars())
        assert seen == {tenant} and heads == {tenant}
    with app_engine.begin() as conn:  # no tenant set: nothing at all
        assert conn.execute(select(audit_events)).first() is None


def test_app_role_cannot_write_into_another_tenants_chain(app_engine: Engine) -> None:
    record = chain(B, 1, "0" * 64, _event(B))
    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        tenant_transaction(app_engine, A) as conn,
    ):
        insert_records(conn, [record])


def test_concurrent_writers_keep_the_chain_valid(app_engine: Engine) -> None:
    logs = [AuditLog(app_engine, KEY, flush_interval=0.0, batch_max=9) for _ in range(3)]
    try:

        def work(log: AuditLog, n: int) -> None:
            for i in range(100):
                log.emit(_event(A if i % 2 else B, n=str(n), i=str(i)))

        workers = [threading.Thread(target=work, args=(log, n)) for n, log in enumerate(logs * 2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        for log in logs:
            log.flush()
        a, b = logs[0].verify(A), logs[0].verify(B)
        assert a.ok and b.ok, (a, b)
        assert a.records + b.records == 600
    finally:
        for log in logs:
            log.close()


def test_chain_rewritten_by_the_app_role_fails_verification(app_engine: Engine) -> None:
    with AuditLog(app_engine, KEY, flush_interval=0.01) as log:
        for i in range(4):
            log.emit(_event(A, i=str(i)))
        log.flush()
        # The app role can rewrite every row and the head's hash, but it cannot read the
        # key, so it cannot produce the head's MAC.
        original = log.events(A)
        prev = "0" * 64
        forged = []
        for r in original:
            fresh = chain(
                A,
                r.seq,
                prev,
                SecurityEvent(
                    "authz.allowed",
                    datetime.fromisoformat(r.at),
                    tenant_id=A,
                    details=dict(r.details),
                ),
            )
            forged.append(fresh)
            prev = fresh.hash
        with tenant_transaction(app_engine, A) as conn:
            conn.execute(audit_events.delete().where(audit_events.c.tenant_id == A))
            insert_records(conn, forged)
            conn.execute(audit_heads.update().where(audit_heads.c.tenant_id == A).values(hash=prev))
        result = log.verify(A)
        assert (result.damage, result.position) == (Damage.HEAD_MISMATCH, 4)
        # a single changed row is located exactly
        with tenant_transaction(app_engine, A) as conn:
            conn.execute(
                audit_heads.update()
                .where(audit_heads.c.tenant_id == A)
                .values(hash=original[-1].hash)
            )
            conn.execute(audit_events.delete().where(audit_events.c.tenant_id == A))
            insert_records(conn, original)
            conn.execute(
                audit_events.update()
                .where(audit_events.c.tenant_id == A, audit_events.c.seq == 2)
                .values(actor="mallory")
            )
        result = log.verify(A)
        assert (result.damage, result.position) == (Damage.CHANGED, 2)
