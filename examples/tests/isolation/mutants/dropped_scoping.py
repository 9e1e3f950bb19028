"""A deliberately broken worklogs store whose listing drops the tenant scoping (a test
fixture, never product code): it lists under ``system_scope``, as a careless "summary"
query might, so on SQLite (no RLS underneath) every tenant's worklogs come back. It reads
only plaintext columns: the encrypted comment would not open under another tenant's key,
which is the keys layer catching the bug, not the probe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from tenancy.scoping import system_scope
from tenancy_examples.worklogs.paging import Position
from tenancy_examples.worklogs.store import Worklog, WorklogStore


class UnscopedListStore(WorklogStore):
    def list(self, *, limit: int = 100) -> list[dict[str, Any]]:
        query = select(
            Worklog.id, Worklog.tenant_id, Worklog.description, Worklog.minutes, Worklog.day
        ).limit(limit)
        with system_scope("mutant: a listing that forgot the tenant"), self.sessions() as session:
            return [
                {
                    "id": row.id,
                    "tenant_id": row.tenant_id,
                    "description": row.description,
                    "minutes": row.minutes,
                    "day": row.day.isoformat(),
                }
                for row in session.execute(query)
            ]

    def page(
        self, *, limit: int, after: Position | None = None
    ) -> tuple[Sequence[dict[str, Any]], Position | None]:
        return self.list(limit=limit), None
