"""How a statement's result becomes a cell's verdict: refused (by RLS or by privileges),
leaked, vacuous or an error, with the rows it saw or touched.

Its own module because these rules are the matrix's judgement, kept apart from the SQL
that produces the results (:mod:`.table`) so that each can be read alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy.exc import DBAPIError

from tenancy.testing.dbmatrix.model import Outcome


@dataclass(frozen=True, slots=True)
class Failure:
    """A statement PostgreSQL refused: its SQLSTATE and message, on one line."""

    sqlstate: str
    message: str


class Verdict(NamedTuple):
    """A cell's outcome, the rows it saw or touched (None: unknown), and why."""

    outcome: Outcome
    rows: int | None
    detail: str


def failure_of(exc: DBAPIError) -> Failure:
    """The SQLSTATE (``?????`` when the driver gives none) and message of ``exc``."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "?????"
    return Failure(str(sqlstate), " ".join(str(orig).split()))


def refused(failure: Failure, *, write: bool = False) -> Verdict:
    """A refused statement: by RLS (enforced), by privileges (denied), for a ``write`` by a
    constraint RLS let it reach (leaked), or otherwise an error."""
    if failure.sqlstate == "42501":
        if "row-level security" in failure.message:
            return Verdict(Outcome.ENFORCED, None, f"refused by RLS: {failure.message}")
        return Verdict(Outcome.DENIED, None, f"refused by privileges: {failure.message}")
    if write and failure.sqlstate in ("23505", "23503"):
        # RLS WITH CHECK runs before unique indexes and foreign keys: reaching them means
        # the policy admitted the row.
        return Verdict(
            Outcome.LEAKED,
            None,
            f"RLS admitted the row; only a constraint stopped it: {failure.message}",
        )
    return Verdict(Outcome.ERROR, None, f"SQLSTATE {failure.sqlstate}: {failure.message}")


def zero(result: int | Failure, present: int | None, *, did: str, holds: str) -> Verdict:
    """A statement that must see or touch no row: ``present`` rows exist to be protected."""
    if isinstance(result, Failure):
        return refused(result)
    if result:
        return Verdict(Outcome.LEAKED, result, f"{result} row(s) {did}")
    if present:
        return Verdict(Outcome.ENFORCED, 0, f"0 row(s) {did}; {holds} {present}")
    if present is None:
        return Verdict(
            Outcome.VACUOUS,
            0,
            f"0 row(s) {did}, but how many rows exist is unknown (their own count failed)",
        )
    return Verdict(Outcome.VACUOUS, 0, f"0 row(s) {did}, but {holds} none to protect")


def written(result: int | Failure, *, did: str) -> Verdict:
    """A write that RLS must refuse outright."""
    if isinstance(result, Failure):
        return refused(result, write=True)
    if result:
        return Verdict(Outcome.LEAKED, result, f"{result} row(s) {did}")
    return Verdict(Outcome.VACUOUS, 0, f"0 row(s) {did}: the statement matched nothing")


def total_of(counts: Iterable[int | None]) -> int | None:
    """The sum of the known counts; None when it is 0 but some count is unknown."""
    values = list(counts)
    known = sum(n for n in values if n is not None)
    return None if not known and None in values else known


def combined(first: Verdict, second: Verdict) -> Verdict:
    """Two verdicts of one cell as one: the worse outcome, the rows of both."""
    order = (Outcome.LEAKED, Outcome.ERROR, Outcome.ENFORCED, Outcome.DENIED, Outcome.VACUOUS)
    outcome = min(first.outcome, second.outcome, key=order.index)
    counted = [v.rows for v in (first, second) if v.rows is not None]
    return Verdict(outcome, sum(counted) if counted else None, f"{first.detail}; {second.detail}")
