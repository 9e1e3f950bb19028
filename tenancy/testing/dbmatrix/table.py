"""The cells of one scoped table: each statement a leaky application would run, tried in
its own savepoint as each tenant, as no tenant, and on a session that never set one.

Its own module because this is the SQL the matrix runs; the transactions around it are in
:mod:`.sessions`, the judgement of its results in :mod:`.verdict`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from sqlalchemy import Connection, column, delete, func, select, table, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Delete, Update

from tenancy.scoping.audit import ScopedTable
from tenancy.scoping.rls import set_tenant
from tenancy.testing.dbmatrix.model import NONE, OWN, UNSET, Cell, Outcome
from tenancy.testing.dbmatrix.sessions import NewSession, rolled_back
from tenancy.testing.dbmatrix.verdict import (
    Failure,
    Verdict,
    combined,
    failure_of,
    refused,
    total_of,
    written,
    zero,
)

_V = TypeVar("_V")


class TableProbe:
    """The cells of one scoped table.

    A tenant of ``""`` runs with the setting set to ``''``, ``None`` with it never set: on
    the new session ``unset``, not on ``connection``.
    """

    def __init__(
        self, connection: Connection, scoped: ScopedTable, tenants: list[str], unset: NewSession
    ) -> None:
        self._c = connection
        self._unset = unset
        self._name = scoped.qualified
        self._tenants = tenants
        self._t = table(scoped.name, column("tenant_id"), schema=scoped.schema)
        prep = connection.dialect.identifier_preparer
        self._sql = f"{prep.quote_schema(scoped.schema)}.{prep.quote(scoped.name)}"
        names = connection.execute(_INSERTABLE, {"oid": scoped.oid}).scalars()
        self._columns = ", ".join(prep.quote(name) for name in names)

    def _attempt(self, tenant: str | None, run: Callable[[Connection], _V]) -> _V | Failure:
        conn = self._c if tenant is not None else self._unset.connection
        if conn is None:
            return Failure("?????", "no new session")  # NewSession.judged says why
        try:
            with rolled_back(conn):
                if tenant is not None:
                    set_tenant(conn, tenant)
                return run(conn)
        except DBAPIError as exc:
            return failure_of(exc)

    def _count(self, tenant: str | None, target: str | None) -> int | Failure:
        query = select(func.count()).select_from(self._t)
        if target is not None:
            query = query.where(self._t.c.tenant_id == target)
        return self._attempt(tenant, lambda c: int(c.execute(query).scalar_one()))

    def _own(self, tenant: str) -> tuple[int, int] | Failure:
        tid = self._t.c.tenant_id
        query = select(
            func.count().filter(tid == tenant), func.count().filter(tid.is_distinct_from(tenant))
        ).select_from(self._t)

        def run(c: Connection) -> tuple[int, int]:
            mine, foreign = c.execute(query).one()
            return int(mine), int(foreign)

        return self._attempt(tenant, run)

    def _sample(self, tenant: str) -> str | None:
        query = text(
            f"SELECT CAST(row_to_json(r) AS text) FROM {self._sql} AS r "  # noqa: S608
            "WHERE r.tenant_id = :tenant LIMIT 1"
        )
        row = self._attempt(tenant, lambda c: c.execute(query, {"tenant": tenant}).scalar())
        return row if isinstance(row, str) else None

    def _insert(self, tenant: str | None, sample: str, as_tenant: str) -> int | Failure:
        # The row travels as PostgreSQL's own JSON, so every column type round-trips
        # without a Python adapter; only tenant_id is replaced.
        statement = text(
            f"INSERT INTO {self._sql} ({self._columns}) OVERRIDING SYSTEM VALUE "  # noqa: S608
            f"SELECT {self._columns} FROM jsonb_populate_record(CAST(NULL AS {self._sql}), "
            "CAST(:row AS jsonb) || jsonb_build_object('tenant_id', CAST(:tenant AS text)))"
        )
        return self._attempt(
            tenant, lambda c: c.execute(statement, {"row": sample, "tenant": as_tenant}).rowcount
        )

    def _write(self, tenant: str | None, statement: Update | Delete) -> int | Failure:
        return self._attempt(tenant, lambda c: c.execute(statement).rowcount)

    def run(self) -> list[Cell]:
        """Every cell of the table: no tenant, the setting never set, each tenant on its
        own rows and against every other tenant's."""
        own = {t: self._own(t) for t in self._tenants}
        counts = {t: None if isinstance(r, Failure) else r[0] for t, r in own.items()}
        samples = {t: self._sample(t) if counts[t] else None for t in self._tenants}
        total = total_of(counts.values())
        cells = self._no_tenant(NONE, "", total, samples)
        cells += self._no_tenant(UNSET, None, total, samples)
        for me in self._tenants:
            others = total_of(n for t, n in counts.items() if t != me)
            cells.append(self._cell("SELECT", me, OWN, self._own_verdict(own[me], others)))
            for you in (t for t in self._tenants if t != me):
                cells += self._cross(me, you, counts, samples[me])
        return cells

    def _cross(
        self, me: str, you: str, counts: Mapping[str, int | None], sample: str | None
    ) -> list[Cell]:
        tid, theirs = self._t.c.tenant_id, counts[you]
        holds = "the target holds"
        if sample is None:
            inserted = Verdict(Outcome.VACUOUS, None, "no own row to copy as the target's")
        else:
            inserted = written(self._insert(me, sample, you), did="inserted as the target's")
        touched = zero(
            self._write(me, update(self._t).values(tenant_id=tid).where(tid == you)),
            theirs,
            did="of the target updated",
            holds=holds,
        )
        if counts[me]:
            moved = written(
                self._write(me, update(self._t).values(tenant_id=you).where(tid == me)),
                did="moved from own to the target",
            )
            touched = combined(touched, moved._replace(detail=f"move: {moved.detail}"))
        return [
            self._cell(
                "SELECT",
                me,
                you,
                zero(self._count(me, you), theirs, did="of the target visible", holds=holds),
            ),
            self._cell("INSERT", me, you, inserted),
            self._cell("UPDATE", me, you, touched),
            self._cell(
                "DELETE",
                me,
                you,
                zero(
                    self._write(me, delete(self._t).where(tid == you)),
                    theirs,
                    did="of the target deleted",
                    holds=holds,
                ),
            ),
        ]

    def _no_tenant(
        self, label: str, setting: str | None, total: int | None, samples: Mapping[str, str | None]
    ) -> list[Cell]:
        tid, holds = self._t.c.tenant_id, "the tenants hold"
        how = "with the setting never set" if setting is None else "with no tenant set"
        inserted = Verdict(Outcome.VACUOUS, None, "no tenant has a row to copy")
        for tenant, sample in samples.items():
            if sample is not None:
                inserted = written(
                    self._insert(setting, sample, tenant), did=f"of {tenant} inserted {how}"
                )
                break
        verdicts = {
            "SELECT": zero(self._count(setting, None), total, did=f"visible {how}", holds=holds),
            "INSERT": inserted,
            "UPDATE": zero(
                self._write(setting, update(self._t).values(tenant_id=tid)),
                total,
                did=f"updated {how}",
                holds=holds,
            ),
            "DELETE": zero(
                self._write(setting, delete(self._t)), total, did=f"deleted {how}", holds=holds
            ),
        }
        if setting is None:
            verdicts = {op: self._unset.judged(v) for op, v in verdicts.items()}
        return [self._cell(op, label, NONE, v) for op, v in verdicts.items()]

    @staticmethod
    def _own_verdict(result: tuple[int, int] | Failure, others: int | None) -> Verdict:
        if isinstance(result, Failure):
            return refused(result)
        mine, foreign = result
        if foreign:
            return Verdict(
                Outcome.LEAKED, mine, f"{foreign} row(s) of other tenants visible beside {mine} own"
            )
        if others:
            return Verdict(
                Outcome.ENFORCED,
                mine,
                f"{mine} own row(s) visible; none of the {others} of other tenants",
            )
        if others is None:
            return Verdict(
                Outcome.VACUOUS,
                mine,
                f"{mine} own row(s) visible; how many rows other tenants hold is unknown",
            )
        return Verdict(
            Outcome.VACUOUS, mine, f"{mine} own row(s) visible; other tenants have none to hide"
        )

    def _cell(self, operation: str, setting: str, target: str, verdict: Verdict) -> Cell:
        return Cell(
            self._name, operation, setting, target, verdict.outcome, verdict.rows, verdict.detail
        )


_INSERTABLE = text("""
    SELECT attname FROM pg_attribute
    WHERE attrelid = CAST(:oid AS oid) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
    ORDER BY attnum
""")
