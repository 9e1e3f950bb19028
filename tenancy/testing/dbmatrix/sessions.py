"""The transactions the matrix runs in: a savepoint per cell, always rolled back, and the
brand-new session of the ``unset`` cells (where the tenant setting has never been set).

Its own module because this is what makes the matrix safe to run on a live database: it
never changes data, and it is read apart from what the cells do inside these transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from tenancy.scoping.rls import TENANT_SETTING
from tenancy.testing.dbmatrix.model import LOCK_TIMEOUT, Outcome
from tenancy.testing.dbmatrix.verdict import Verdict, failure_of


@dataclass(frozen=True, slots=True)
class NewSession:
    """The brand-new session of the ``unset`` cells, the value the tenant setting had when
    it started (None: never set, the case to test), or why it could not be opened."""

    connection: Connection | None
    start: str | None = None
    failure: str | None = None

    def judged(self, verdict: Verdict) -> Verdict:
        """``verdict`` as it stands on this session: an error when it could not be opened,
        vacuous (if enforced) when it did not start with the setting NULL."""
        if self.failure is not None:
            return Verdict(Outcome.ERROR, None, f"no new session: {self.failure}")
        if self.start is None:
            return verdict
        note = (
            f"a new session starts with the setting {self.start!r}, not NULL (a role or "
            "database default, or a pooler's reused session)"
        )
        if verdict.outcome is Outcome.ENFORCED:
            return Verdict(
                Outcome.VACUOUS,
                verdict.rows,
                f"{note}: the never-set case was not reached; {verdict.detail}",
            )
        return verdict._replace(detail=f"{note}; {verdict.detail}")


@contextmanager
def new_session(connection: Connection, role: str) -> Iterator[NewSession]:
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
            yield NewSession(None, failure=failure_of(exc).message)
            return
        with fresh:
            transaction = fresh.begin()
            try:
                yield _started(fresh, role)
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def _started(fresh: Connection, role: str) -> NewSession:
    try:
        if fresh.execute(text("SELECT current_user")).scalar_one() != role:
            fresh.execute(select(func.set_config("role", role, True)))  # SET LOCAL ROLE
        fresh.execute(select(func.set_config("lock_timeout", LOCK_TIMEOUT, True)))
        start = fresh.execute(select(func.current_setting(TENANT_SETTING, True))).scalar()
    except DBAPIError as exc:
        return NewSession(None, failure=failure_of(exc).message)
    return NewSession(fresh, None if start is None else str(start))


@contextmanager
def rolled_back(connection: Connection) -> Iterator[None]:
    """A savepoint on ``connection``, always rolled back: nothing run inside stays."""
    savepoint = connection.begin_nested()
    try:
        yield
    finally:
        savepoint.rollback()
