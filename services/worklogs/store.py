"""Demonstrates tenant-owned storage: every query takes the tenant from the bound context.

No method accepts a tenant id from its caller; with no context bound, every method raises
``NoTenantContext`` before touching the database (fail closed).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import current
from tenancy.errors import NotFound

metadata = MetaData()

worklogs = Table(
    "worklogs",
    metadata,
    # tenant_id leads the primary key: rows are addressed per tenant, ready for sharding.
    Column("tenant_id", String(36), nullable=False),
    Column("id", String(36), nullable=False),
    Column("author", String(255), nullable=False),
    Column("description", String(500), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("day", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
)


class WorklogStore:
    """CRUD on worklogs of the current tenant only."""

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._engine = engine
        self._clock = clock

    def create_schema(self) -> None:
        metadata.create_all(self._engine)

    def list(self, *, limit: int = 100) -> list[dict[str, Any]]:
        tenant_id = current().tenant_id
        query = (
            select(worklogs)
            .where(worklogs.c.tenant_id == tenant_id)
            .order_by(worklogs.c.day.desc(), worklogs.c.created_at.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_public(row._mapping) for row in conn.execute(query)]

    def get(self, worklog_id: str) -> dict[str, Any]:
        tenant_id = current().tenant_id
        query = select(worklogs).where(
            worklogs.c.tenant_id == tenant_id, worklogs.c.id == _uuid(worklog_id)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound("no such worklog")
        return _public(row._mapping)

    def create(self, *, description: str, minutes: int, day: date) -> dict[str, Any]:
        ctx = current()
        values = {
            "tenant_id": ctx.tenant_id,
            "id": str(uuid.uuid4()),
            "author": ctx.principal.subject,
            "description": description,
            "minutes": minutes,
            "day": day,
            "created_at": self._clock.now(),
        }
        with self._engine.begin() as conn:
            conn.execute(insert(worklogs).values(**values))
        return _public(values)

    def update(self, worklog_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        tenant_id = current().tenant_id
        if changes:
            with self._engine.begin() as conn:
                result = conn.execute(
                    update(worklogs)
                    .where(worklogs.c.tenant_id == tenant_id, worklogs.c.id == _uuid(worklog_id))
                    .values(**changes)
                )
            if result.rowcount != 1:
                raise NotFound("no such worklog")
        return self.get(worklog_id)

    def delete(self, worklog_id: str) -> None:
        tenant_id = current().tenant_id
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(worklogs).where(
                    worklogs.c.tenant_id == tenant_id, worklogs.c.id == _uuid(worklog_id)
                )
            )
        if result.rowcount != 1:
            raise NotFound("no such worklog")


def _uuid(value: str) -> str:
    # A malformed id is "not found", exactly like another tenant's id.
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound("no such worklog") from exc


def _public(row: Any) -> dict[str, Any]:
    created = row["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "author": row["author"],
        "description": row["description"],
        "minutes": row["minutes"],
        "day": row["day"].isoformat(),
        "created_at": created.isoformat(),
    }
