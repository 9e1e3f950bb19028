"""A replay guard shared by every replica through a database table (SQLite, PostgreSQL).

The table's primary key is the token id, so the database decides atomically which of two
replicas saw a token first::

    INSERT INTO tenancy_replay_jti (jti, expires_at) VALUES (...)   -> unique violation:
    UPDATE tenancy_replay_jti SET expires_at = ... WHERE jti = ... AND expires_at <= now

The first statement records a new id; on a unique violation the second takes over a row
whose token has expired (a row locked by another replica's update is re-checked by
PostgreSQL once that commits, so exactly one of them wins). Anything else is a replay.
Rows outlive their tokens until :meth:`TableReplayGuard.prune` runs (a periodic job).

**Schema.** :meth:`TableReplayGuard.create_schema` creates the table (SQLite, tests). On
PostgreSQL the owner's migrations create it, as for the library's other tables, e.g. in
Alembic ``replay_table.create(op.get_bind())`` followed by
``grant_statements(app_role, [replay_table], dialect, privileges=REPLAY_PRIVILEGES)``
(``tenancy.scoping.rls``). It holds no tenant data: no RLS.

**Fail closed.** A database error (unreachable, a lost connection, a missing table, a
failed commit) refuses the token, rolls the transaction back, is logged on
``tenancy.propagation`` and is emitted as ``replay_guard.unavailable`` when an event sink
is given.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    delete,
    insert,
    update,
)
from sqlalchemy.exc import IntegrityError

from tenancy.clock import SYSTEM_CLOCK
from tenancy.events import EventSink, SecurityEvent

logger = logging.getLogger("tenancy.propagation")

# The longest id the verifier passes is "<service>/<jti>" (a jti is at most 64 characters).
MAX_JTI = 255
# What the application role needs on the table: record, take over an expired row, prune.
REPLAY_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

metadata = MetaData()

replay_table = Table(
    "tenancy_replay_jti",
    metadata,
    Column("jti", String(MAX_JTI), primary_key=True),
    Column("expires_at", Float, nullable=False),  # seconds since the epoch
    Index("ix_tenancy_replay_jti_expires_at", "expires_at"),
)


class TableReplayGuard:
    """Seen context-token ids in a database table, shared by every replica on it.

    Args:
        engine: the database (an application role with :data:`REPLAY_PRIVILEGES` on
            the table is enough). Give it a small ``pool_timeout`` and the driver a
            connect timeout: a token waits for them before it is refused.
        events: where a failure to record is emitted (it is always logged).
    """

    def __init__(self, engine: Engine, *, events: EventSink | None = None) -> None:
        self._engine = engine
        self._events = events

    def create_schema(self) -> None:
        """Create the table where missing (SQLite and tests; on PostgreSQL the owner's
        migrations do, see the module's docstring)."""
        metadata.create_all(self._engine)

    def first_use(self, jti: str, *, expires_at: float, now: float) -> bool:
        """Record ``jti`` until ``expires_at`` and return True, or return False when an
        unexpired row holds it (a replay, on this replica or any other) or the database
        cannot record it."""
        if len(jti) > MAX_JTI:
            logger.warning("replay guard: token id longer than %d characters: refused", MAX_JTI)
            return False
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(replay_table).values(jti=jti, expires_at=expires_at))
            return True
        except IntegrityError:
            pass  # recorded before: a replay, unless that row's token has expired
        except Exception as exc:  # any failure to record refuses the token
            self._unavailable(exc)
            return False
        try:
            with self._engine.begin() as conn:
                taken = conn.execute(
                    update(replay_table)
                    .where(replay_table.c.jti == jti, replay_table.c.expires_at <= now)
                    .values(expires_at=expires_at)
                )
            return taken.rowcount == 1
        except Exception as exc:
            self._unavailable(exc)
            return False

    def prune(self, now: float | None = None) -> int:
        """Delete the rows whose token expired at ``now`` (default: the wall clock);
        returns how many. Run it periodically: it only bounds the table's size.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database did not take the delete.
        """
        now = time.time() if now is None else now
        with self._engine.begin() as conn:
            done = conn.execute(delete(replay_table).where(replay_table.c.expires_at <= now))
        return done.rowcount

    def _unavailable(self, exc: Exception) -> None:
        reason = type(exc).__name__
        logger.warning("replay guard: the database did not record a token id (%s): refused", reason)
        if self._events is not None:
            self._events.emit(
                SecurityEvent(
                    action="replay_guard.unavailable",
                    at=SYSTEM_CLOCK.now(),
                    reason=reason,
                    details={"store": "table"},
                )
            )

    def __repr__(self) -> str:
        # The engine's URL may carry a password: only the backend is shown.
        return f"TableReplayGuard({self._engine.dialect.name!r})"
