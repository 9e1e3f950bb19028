"""Grants and their trail in two tenant-owned tables (``tenant_id`` first; RLS on PG)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from tenancy.clock import as_utc
from tenancy.scoping.rls import tenant_transaction
from tenancy.support.model import Grant, GrantState

metadata = MetaData()

grants = Table(
    "tenancy_support_grants",
    metadata,
    Column("tenant_id", String(36), nullable=False),
    Column("id", String(36), nullable=False),
    Column("engineer", String(255), nullable=False),
    Column("engineer_issuer", String(512), nullable=False),
    Column("ticket_id", String(128), nullable=False),
    Column("justification", Text, nullable=False),
    Column("requested_scopes", Text, nullable=False),
    Column("requested_seconds", Float, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("pending_until", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("seconds", Float),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(255)),
    Column("ticket_closed_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(255)),
    Column("break_glass", Boolean, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
)

trail = Table(
    "tenancy_support_trail",
    metadata,
    Column("tenant_id", String(36), nullable=False),
    Column("grant_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "grant_id", "seq"),
)


class GrantStore:
    """Reads and writes grants and their trail, one tenant per transaction. Every query
    names the tenant except ``by_ticket``, which relies on the transaction's tenant (RLS on
    PostgreSQL) or on its caller's filter."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_schema(self) -> None:
        """Create both tables where missing, without RLS policies: on PostgreSQL those come
        from a migration (``tenancy.scoping.rls.migration_statements``)."""
        metadata.create_all(self._engine)

    def transaction(self, tenant_id: str) -> AbstractContextManager[Connection]:
        """A transaction scoped to ``tenant_id`` (on PostgreSQL the RLS setting is applied
        first); every method below expects a connection from here."""
        return tenant_transaction(self._engine, tenant_id)

    def put(self, conn: Connection, grant: Grant) -> None:
        """Insert the grant, or replace every stored field of the grant with the same tenant
        and id. It checks no state transition: ``SupportAccess`` does that before calling."""
        values = _values(grant)
        done = conn.execute(
            update(grants)
            .where(grants.c.tenant_id == grant.tenant_id, grants.c.id == grant.id)
            .values(**values)
        )
        if done.rowcount == 0:
            conn.execute(grants.insert().values(tenant_id=grant.tenant_id, id=grant.id, **values))

    def get(self, conn: Connection, tenant_id: str, grant_id: str) -> Grant | None:
        """The tenant's grant ``grant_id``, or None; another tenant's grant with that id is
        never returned."""
        row = conn.execute(
            select(grants).where(grants.c.tenant_id == tenant_id, grants.c.id == grant_id)
        ).first()
        return None if row is None else _grant(row)

    def of_tenant(self, conn: Connection, tenant_id: str) -> list[Grant]:
        """Every grant of the tenant, any state, newest request first."""
        rows = conn.execute(
            select(grants)
            .where(grants.c.tenant_id == tenant_id)
            .order_by(grants.c.requested_at.desc())
        )
        return [_grant(r) for r in rows]

    def of_engineer(
        self, conn: Connection, tenant_id: str, engineer: str, issuer: str
    ) -> list[Grant]:
        """The tenant's approved grants of one engineer, matched on subject *and* issuer
        (the same subject from another identity provider is someone else). Approved is not
        active: the caller checks the time window."""
        rows = conn.execute(
            select(grants).where(
                grants.c.tenant_id == tenant_id,
                grants.c.engineer == engineer,
                grants.c.engineer_issuer == issuer,
                grants.c.state == GrantState.APPROVED.value,
            )
        )
        return [_grant(r) for r in rows]

    def by_ticket(self, conn: Connection, ticket_id: str) -> list[Grant]:
        """The grants that name ``ticket_id``. The query has no tenant filter: on PostgreSQL
        RLS limits it to the transaction's tenant, on other databases it returns every
        tenant's, so the caller must drop the grants of other tenants
        (``SupportAccess.close_ticket`` does)."""
        rows = conn.execute(select(grants).where(grants.c.ticket_id == ticket_id))
        return [_grant(r) for r in rows]

    def lock(self, conn: Connection, grant: Grant) -> None:
        """Hold the grant's row until the transaction ends (PostgreSQL; SQLite writes one
        transaction at a time), so concurrent requests under one grant append in turn."""
        conn.execute(
            select(grants.c.id)
            .where(grants.c.tenant_id == grant.tenant_id, grants.c.id == grant.id)
            .with_for_update()
        )

    def record(
        self,
        conn: Connection,
        grant: Grant,
        *,
        at: datetime,
        actor: str,
        action: str,
        detail: dict[str, Any],
    ) -> int:
        """Append to the grant's trail; its ``seq``. The next ``seq`` is taken inside the
        INSERT, under the grant's lock: two requests served at once never claim the same
        one (and on SQLite the INSERT holds the write lock from its first read)."""
        self.lock(conn, grant)
        next_seq = (
            select(func.coalesce(func.max(trail.c.seq), 0) + 1)
            .where(trail.c.tenant_id == grant.tenant_id, trail.c.grant_id == grant.id)
            .scalar_subquery()
        )
        return int(
            conn.execute(
                trail.insert()
                .values(
                    tenant_id=grant.tenant_id,
                    grant_id=grant.id,
                    seq=next_seq,
                    at=at,
                    actor=actor,
                    action=action,
                    detail=json.dumps(detail, sort_keys=True),
                )
                .returning(trail.c.seq)
            ).scalar_one()
        )

    def first_seq(self, conn: Connection, tenant_id: str, grant_id: str, action: str) -> int | None:
        """The ``seq`` of the grant's first ``action`` (stops at the first match)."""
        found = conn.execute(
            select(trail.c.seq)
            .where(
                trail.c.tenant_id == tenant_id,
                trail.c.grant_id == grant_id,
                trail.c.action == action,
            )
            .order_by(trail.c.seq)
            .limit(1)
        ).scalar()
        return None if found is None else int(found)

    def trail_of(self, conn: Connection, tenant_id: str, grant_id: str) -> list[dict[str, Any]]:
        """The grant's trail entries in ``seq`` order, each with its decoded ``detail``."""
        rows = conn.execute(
            select(trail)
            .where(trail.c.tenant_id == tenant_id, trail.c.grant_id == grant_id)
            .order_by(trail.c.seq)
        )
        return [
            {
                "seq": r.seq,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "detail": json.loads(r.detail),
            }
            for r in rows
        ]


def _values(grant: Grant) -> dict[str, Any]:
    return {
        "engineer": grant.engineer,
        "engineer_issuer": grant.engineer_issuer,
        "ticket_id": grant.ticket_id,
        "justification": grant.justification,
        "requested_scopes": json.dumps(sorted(grant.requested_scopes)),
        "requested_seconds": grant.requested_duration.total_seconds(),
        "requested_at": grant.requested_at,
        "pending_until": grant.pending_until,
        "state": grant.state.value,
        "scopes": json.dumps(sorted(grant.scopes)),
        "seconds": None if grant.duration is None else grant.duration.total_seconds(),
        "decided_at": grant.decided_at,
        "decided_by": grant.decided_by,
        "ticket_closed_at": grant.ticket_closed_at,
        "revoked_at": grant.revoked_at,
        "revoked_by": grant.revoked_by,
        "break_glass": grant.break_glass,
    }


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def _grant(row: Row[Any]) -> Grant:
    return Grant(
        id=row.id,
        tenant_id=row.tenant_id,
        engineer=row.engineer,
        engineer_issuer=row.engineer_issuer,
        ticket_id=row.ticket_id,
        justification=row.justification,
        requested_scopes=frozenset(json.loads(row.requested_scopes)),
        requested_duration=timedelta(seconds=row.requested_seconds),
        requested_at=_aware(row.requested_at),  # type: ignore[arg-type]
        pending_until=_aware(row.pending_until),  # type: ignore[arg-type]
        state=GrantState(row.state),
        scopes=frozenset(json.loads(row.scopes)),
        duration=None if row.seconds is None else timedelta(seconds=row.seconds),
        decided_at=_aware(row.decided_at),
        decided_by=row.decided_by,
        ticket_closed_at=_aware(row.ticket_closed_at),
        revoked_at=_aware(row.revoked_at),
        revoked_by=row.revoked_by,
        break_glass=bool(row.break_glass),
    )
