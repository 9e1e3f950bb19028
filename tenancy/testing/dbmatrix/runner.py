"""Running the matrix: every cell in its own savepoint of a transaction rolled back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from sqlalchemy import Connection, column, create_engine, delete, func, select, table, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Delete, Update

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import MatrixError
from tenancy.scoping.audit import ScopedTable, audit, scoped_tables
from tenancy.scoping.rls import TENANT_SETTING, set_tenant
from tenancy.tenants.registry import tenants_table
from tenancy.testing.dbmatrix.model import (
    LOCK_TIMEOUT,
    NONE,
    OWN,
    UNSET,
    Cell,
    DatabaseMatrix,
    Outcome,
)

_V = TypeVar("_V")


def access_matrix(
    connection: Connection,
    *,
    tenants: Sequence[str] | None = None,
    app_role: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DatabaseMatrix:
    """Build the matrix on ``connection`` (connect as the application role: the matrix
    proves what *that* role can do). ``tenants`` defaults to the registry's ids.

    Nothing is changed: the work runs in a transaction (a savepoint if one is open) that
    is always rolled back. Raises MatrixError when there are no tenants to test, the
    database is not PostgreSQL, or the connection cannot hold a transaction.
    """
    if connection.dialect.name != "postgresql":
        raise MatrixError("the access matrix needs PostgreSQL (row-level security)")
    outer = connection.begin_nested() if connection.in_transaction() else connection.begin()
    try:
        _require_savepoints(connection)
        connection.execute(select(func.set_config("lock_timeout", LOCK_TIMEOUT, True)))
        role = str(connection.execute(text("SELECT current_user")).scalar_one())
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
        findings = audit(connection, app_role=app_role)
        ids = _tenant_ids(connection, tenants)
        found = scoped_tables(connection)
        with _new_session(connection, role) as unset:
            cells = [
                cell
                for scoped in found
                for cell in _TableProbe(connection, scoped, ids, unset).run()
            ]
    finally:
        outer.rollback()
    url = connection.engine.url.set(password=None).render_as_string(hide_password=False)
    return DatabaseMatrix(
        clock.now(),
        url,
        role,
        version,
        tuple(ids),
        tuple(t.qualified for t in found),
        tuple(cells),
        tuple(findings),
    )


def access_matrix_for_url(
    url: str,
    *,
    tenants: Sequence[str] | None = None,
    app_role: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DatabaseMatrix:
    """Connect to ``url`` once and build :func:`access_matrix`."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return access_matrix(connection, tenants=tenants, app_role=app_role, clock=clock)
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class _Failure:
    sqlstate: str
    message: str


class _Verdict(NamedTuple):
    outcome: Outcome
    rows: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class _Session:
    """The brand-new session of the ``unset`` cells, the value the tenant setting had when
    it started (None: never set, the case to test), or why it could not be opened."""

    connection: Connection | None
    start: str | None = None
    failure: str | None = None

    def judged(self, verdict: _Verdict) -> _Verdict:
        if self.failure is not None:
            return _Verdict(Outcome.ERROR, None, f"no new session: {self.failure}")
        if self.start is None:
            return verdict
        note = (
            f"a new session starts with the setting {self.start!r}, not NULL (a role or "
            "database default, or a pooler's reused session)"
        )
        if verdict.outcome is Outcome.ENFORCED:
            return _Verdict(
                Outcome.VACUOUS,
                verdict.rows,
                f"{note}: the never-set case was not reached; {verdict.detail}",
            )
        return verdict._replace(detail=f"{note}; {verdict.detail}")


@contextmanager
def _new_session(connection: Connection, role: str) -> Iterator[_Session]:
    """A new session of ``role`` on the same database, in a transaction always rolled back.

    Its pool is a fresh copy of the connection's own (same creator, same connect events):
    no pooled session is reused, where an earlier ``set_config(..., true)`` would leave
    the setting reading ``''`` instead of NULL.
    """
    engine = create_engine(connection.engine.url, pool=connection.engine.pool.recreate())
    try:
        try:
            fresh = engine.connect()
        except DBAPIError as exc:
            yield _Session(None, failure=_failure(exc).message)
            return
        with fresh:
            transaction = fresh.begin()
            try:
                yield _started(fresh, role)
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def _started(fresh: Connection, role: str) -> _Session:
    try:
        if fresh.execute(text("SELECT current_user")).scalar_one() != role:
            fresh.execute(select(func.set_config("role", role, True)))  # SET LOCAL ROLE
        fresh.execute(select(func.set_config("lock_timeout", LOCK_TIMEOUT, True)))
        start = fresh.execute(select(func.current_setting(TENANT_SETTING, True))).scalar()
    except DBAPIError as exc:
        return _Session(None, failure=_failure(exc).message)
    return _Session(fresh, None if start is None else str(start))


@contextmanager
def _rolled_back(connection: Connection) -> Iterator[None]:
    savepoint = connection.begin_nested()
    try:
        yield
    finally:
        savepoint.rollback()


def _failure(exc: DBAPIError) -> _Failure:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "?????"
    return _Failure(str(sqlstate), " ".join(str(orig).split()))


def _require_savepoints(connection: Connection) -> None:
    # In autocommit mode every statement would commit: refuse before any write runs.
    try:
        with _rolled_back(connection):
            pass
    except DBAPIError as exc:
        raise MatrixError(
            f"the connection cannot hold a transaction (autocommit?): {_failure(exc).message}"
        ) from None


def _tenant_ids(connection: Connection, tenants: Sequence[str] | None) -> list[str]:
    if tenants is None:
        try:
            with _rolled_back(connection):
                tenants = list(
                    connection.execute(
                        select(tenants_table.c.id).order_by(tenants_table.c.id)
                    ).scalars()
                )
        except DBAPIError as exc:
            raise MatrixError(
                f"no tenants given and the registry table {tenants_table.name} "
                f"cannot be read ({_failure(exc).message}): pass --tenant ID "
                "(at least one)"
            ) from None
        if not tenants:
            raise MatrixError(
                f"no tenants given and the registry table {tenants_table.name} "
                "is empty: pass --tenant ID (at least one)"
            )
    ids = list(dict.fromkeys(tenants))
    if not ids:
        raise MatrixError("no tenants given: pass --tenant ID (at least one)")
    reserved = [t for t in ids if t in ("", NONE, UNSET, OWN)]
    if reserved:
        raise MatrixError(f"{reserved[0]!r} cannot be a tenant id in the matrix")
    return ids


def _refused(failure: _Failure, *, write: bool = False) -> _Verdict:
    if failure.sqlstate == "42501":
        if "row-level security" in failure.message:
            return _Verdict(Outcome.ENFORCED, None, f"refused by RLS: {failure.message}")
        return _Verdict(Outcome.DENIED, None, f"refused by privileges: {failure.message}")
    if write and failure.sqlstate in ("23505", "23503"):
        # RLS WITH CHECK runs before unique indexes and foreign keys: reaching them means
        # the policy admitted the row.
        return _Verdict(
            Outcome.LEAKED,
            None,
            f"RLS admitted the row; only a constraint stopped it: {failure.message}",
        )
    return _Verdict(Outcome.ERROR, None, f"SQLSTATE {failure.sqlstate}: {failure.message}")


def _zero(result: int | _Failure, present: int | None, *, did: str, holds: str) -> _Verdict:
    """A statement that must see or touch no row: ``present`` rows exist to be protected."""
    if isinstance(result, _Failure):
        return _refused(result)
    if result:
        return _Verdict(Outcome.LEAKED, result, f"{result} row(s) {did}")
    if present:
        return _Verdict(Outcome.ENFORCED, 0, f"0 row(s) {did}; {holds} {present}")
    if present is None:
        return _Verdict(
            Outcome.VACUOUS,
            0,
            f"0 row(s) {did}, but how many rows exist is unknown (their own count failed)",
        )
    return _Verdict(Outcome.VACUOUS, 0, f"0 row(s) {did}, but {holds} none to protect")


def _written(result: int | _Failure, *, did: str) -> _Verdict:
    """A write that RLS must refuse outright."""
    if isinstance(result, _Failure):
        return _refused(result, write=True)
    if result:
        return _Verdict(Outcome.LEAKED, result, f"{result} row(s) {did}")
    return _Verdict(Outcome.VACUOUS, 0, f"0 row(s) {did}: the statement matched nothing")


def _total(counts: Iterable[int | None]) -> int | None:
    """The sum of the known counts; None when it is 0 but some count is unknown."""
    values = list(counts)
    known = sum(n for n in values if n is not None)
    return None if not known and None in values else known


def _combined(first: _Verdict, second: _Verdict) -> _Verdict:
    order = (Outcome.LEAKED, Outcome.ERROR, Outcome.ENFORCED, Outcome.DENIED, Outcome.VACUOUS)
    outcome = min(first.outcome, second.outcome, key=order.index)
    counted = [v.rows for v in (first, second) if v.rows is not None]
    return _Verdict(outcome, sum(counted) if counted else None, f"{first.detail}; {second.detail}")


class _TableProbe:
    """The cells of one scoped table.

    A tenant of ``""`` runs with the setting set to ``''``, ``None`` with it never set: on
    the new session ``unset``, not on ``connection``.
    """

    def __init__(
        self, connection: Connection, scoped: ScopedTable, tenants: list[str], unset: _Session
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

    def _attempt(self, tenant: str | None, run: Callable[[Connection], _V]) -> _V | _Failure:
        conn = self._c if tenant is not None else self._unset.connection
        if conn is None:
            return _Failure("?????", "no new session")  # _Session.judged says why
        try:
            with _rolled_back(conn):
                if tenant is not None:
                    set_tenant(conn, tenant)
                return run(conn)
        except DBAPIError as exc:
            return _failure(exc)

    def _count(self, tenant: str | None, target: str | None) -> int | _Failure:
        query = select(func.count()).select_from(self._t)
        if target is not None:
            query = query.where(self._t.c.tenant_id == target)
        return self._attempt(tenant, lambda c: int(c.execute(query).scalar_one()))

    def _own(self, tenant: str) -> tuple[int, int] | _Failure:
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

    def _insert(self, tenant: str | None, sample: str, as_tenant: str) -> int | _Failure:
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

    def _write(self, tenant: str | None, statement: Update | Delete) -> int | _Failure:
        return self._attempt(tenant, lambda c: c.execute(statement).rowcount)

    def run(self) -> list[Cell]:
        own = {t: self._own(t) for t in self._tenants}
        counts = {t: None if isinstance(r, _Failure) else r[0] for t, r in own.items()}
        samples = {t: self._sample(t) if counts[t] else None for t in self._tenants}
        total = _total(counts.values())
        cells = self._no_tenant(NONE, "", total, samples)
        cells += self._no_tenant(UNSET, None, total, samples)
        for me in self._tenants:
            others = _total(n for t, n in counts.items() if t != me)
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
            inserted = _Verdict(Outcome.VACUOUS, None, "no own row to copy as the target's")
        else:
            inserted = _written(self._insert(me, sample, you), did="inserted as the target's")
        touched = _zero(
            self._write(me, update(self._t).values(tenant_id=tid).where(tid == you)),
            theirs,
            did="of the target updated",
            holds=holds,
        )
        if counts[me]:
            moved = _written(
                self._write(me, update(self._t).values(tenant_id=you).where(tid == me)),
                did="moved from own to the target",
            )
            touched = _combined(touched, moved._replace(detail=f"move: {moved.detail}"))
        return [
            self._cell(
                "SELECT",
                me,
                you,
                _zero(self._count(me, you), theirs, did="of the target visible", holds=holds),
            ),
            self._cell("INSERT", me, you, inserted),
            self._cell("UPDATE", me, you, touched),
            self._cell(
                "DELETE",
                me,
                you,
                _zero(
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
        inserted = _Verdict(Outcome.VACUOUS, None, "no tenant has a row to copy")
        for tenant, sample in samples.items():
            if sample is not None:
                inserted = _written(
                    self._insert(setting, sample, tenant), did=f"of {tenant} inserted {how}"
                )
                break
        verdicts = {
            "SELECT": _zero(self._count(setting, None), total, did=f"visible {how}", holds=holds),
            "INSERT": inserted,
            "UPDATE": _zero(
                self._write(setting, update(self._t).values(tenant_id=tid)),
                total,
                did=f"updated {how}",
                holds=holds,
            ),
            "DELETE": _zero(
                self._write(setting, delete(self._t)), total, did=f"deleted {how}", holds=holds
            ),
        }
        if setting is None:
            verdicts = {op: self._unset.judged(v) for op, v in verdicts.items()}
        return [self._cell(op, label, NONE, v) for op, v in verdicts.items()]

    @staticmethod
    def _own_verdict(result: tuple[int, int] | _Failure, others: int | None) -> _Verdict:
        if isinstance(result, _Failure):
            return _refused(result)
        mine, foreign = result
        if foreign:
            return _Verdict(
                Outcome.LEAKED, mine, f"{foreign} row(s) of other tenants visible beside {mine} own"
            )
        if others:
            return _Verdict(
                Outcome.ENFORCED,
                mine,
                f"{mine} own row(s) visible; none of the {others} of other tenants",
            )
        if others is None:
            return _Verdict(
                Outcome.VACUOUS,
                mine,
                f"{mine} own row(s) visible; how many rows other tenants hold is unknown",
            )
        return _Verdict(
            Outcome.VACUOUS, mine, f"{mine} own row(s) visible; other tenants have none to hide"
        )

    def _cell(self, operation: str, setting: str, target: str, verdict: _Verdict) -> Cell:
        return Cell(
            self._name, operation, setting, target, verdict.outcome, verdict.rows, verdict.detail
        )


_INSERTABLE = text("""
    SELECT attname FROM pg_attribute
    WHERE attrelid = CAST(:oid AS oid) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
    ORDER BY attnum
""")
