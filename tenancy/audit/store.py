"""The audit tables: tenant-owned, ``tenant_id``-first primary keys, under RLS on
PostgreSQL (a tenant's admin session sees its own trail only).

``tenancy_audit_events`` holds the records; ``tenancy_audit_heads`` one row per chain:
the last ``seq``, its ``hash`` and the head's HMAC. Writers lock the head row first, so
``seq`` is serialised per tenant across threads and processes; the ``(tenant_id, seq)``
primary key refuses any second record at a position regardless.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from tenancy.audit.record import AuditRecord

metadata = MetaData()

audit_events = Table(
    "tenancy_audit_events",
    metadata,
    Column("tenant_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("v", Integer, nullable=False),
    Column("at", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("actor", String(255)),
    Column("request_id", String(64)),
    Column("reason", Text),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    PrimaryKeyConstraint("tenant_id", "seq"),
)

audit_heads = Table(
    "tenancy_audit_heads",
    metadata,
    Column("tenant_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id"),
)

TABLES = (audit_events, audit_heads)


@dataclass(frozen=True, slots=True)
class Head:
    """The stored head of one tenant's chain: the last ``seq``, that record's ``hash``, and
    the HMAC over them that proves the head was written by a holder of the audit key."""

    tenant_id: str
    seq: int
    hash: str
    mac: str


def lock_head(conn: Connection, tenant_id: str) -> Head | None:
    """The chain head, locked for this transaction (a no-op UPDATE takes the row lock on
    PostgreSQL and the write lock on SQLite before anything is read)."""
    conn.execute(
        update(audit_heads)
        .where(audit_heads.c.tenant_id == tenant_id)
        .values(seq=audit_heads.c.seq)
    )
    return read_head(conn, tenant_id)


def read_head(conn: Connection, tenant_id: str) -> Head | None:
    """The tenant's chain head as stored, without locking it, or None if the tenant has no
    records yet. Its MAC is not checked here."""
    row = conn.execute(select(audit_heads).where(audit_heads.c.tenant_id == tenant_id)).first()
    return None if row is None else Head(row.tenant_id, int(row.seq), row.hash, row.mac)


def put_head(conn: Connection, head: Head, now: datetime, *, exists: bool) -> None:
    """Write the chain head: update the row if ``exists``, else insert it. Two first writers
    of one tenant racing both find no row to lock, and the second insert fails on the
    primary key (a conflict the writer retries), never two heads."""
    values = {"seq": head.seq, "hash": head.hash, "mac": head.mac, "updated_at": now}
    if exists:
        conn.execute(
            update(audit_heads).where(audit_heads.c.tenant_id == head.tenant_id).values(**values)
        )
    else:
        conn.execute(insert(audit_heads).values(tenant_id=head.tenant_id, **values))


def insert_records(conn: Connection, records: Sequence[AuditRecord]) -> None:
    """Insert already chained records (nothing for an empty sequence). A record at a ``seq``
    the tenant already has fails on the primary key: records are never overwritten."""
    if records:
        conn.execute(insert(audit_events), [_row(r) for r in records])


def read_records(conn: Connection, tenant_id: str) -> list[AuditRecord]:
    """Every record of the tenant, in ``seq`` order, as stored: nothing is verified here
    (see ``verify_chain``)."""
    rows = conn.execute(
        select(audit_events)
        .where(audit_events.c.tenant_id == tenant_id)
        .order_by(audit_events.c.seq)
    )
    return [_record(row) for row in rows]


def _row(record: AuditRecord) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id,
        "seq": record.seq,
        "v": record.v,
        "at": record.at,
        "action": record.action,
        "actor": record.actor,
        "request_id": record.request_id,
        "reason": record.reason,
        "details": json.dumps(dict(record.details), sort_keys=True, separators=(",", ":")),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def _record(row: Row[Any]) -> AuditRecord:
    details = json.loads(row.details)
    return AuditRecord(
        tenant_id=row.tenant_id,
        seq=int(row.seq),
        at=row.at,
        action=row.action,
        actor=row.actor,
        request_id=row.request_id,
        reason=row.reason,
        details=details if isinstance(details, dict) else {"_": str(details)},
        prev_hash=row.prev_hash,
        hash=row.hash,
        v=int(row.v),
    )
