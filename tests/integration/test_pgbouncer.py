"""Behind a real PgBouncer in transaction pooling mode (``tests.support.pgbouncer``).

First the fault as operators met it: psycopg prepares a statement after five executions,
the next transaction lands on another server connection, and the statement is missing
there (or already there). Then the same load with ``pooler_options``: no error, on
each driver, with tenant sessions under forced RLS, and no tenant setting left on any
server connection afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from tenancy.context import bind
from tenancy.errors import ConfigurationError
from tenancy.scoping import AsyncTenantSession, TenantSession
from tenancy.scoping.pooling import pooler_options
from tenancy.scoping.rls import enable_rls, grant_app_role, tenant_transaction
from tests.support.pgbouncer import running_pgbouncer
from tests.support.postgres import app_role_database
from tests.support.scoping_models import A, B, Base, Project, ctx

pytestmark = pytest.mark.postgres

WORKERS = 6
ROUNDS = 30


@dataclass(frozen=True)
class Bounced:
    owner: Engine
    url: str  # the application role, through PgBouncer (sync psycopg URL)


@pytest.fixture
def bounced() -> Iterator[Bounced]:
    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        for tenant in (A, B):
            conn.execute(
                text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'p1', :n)"),
                {"t": tenant, "n": f"of {tenant[-1]}"},
            )
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)

    with app_role_database(setup) as (owner, app):
        database, role = str(app.url.database), str(app.url.username)
        with running_pgbouncer(database, [role, "postgres"], pool_size=2) as port:
            url = app.url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
            yield Bounced(owner, url)


def hammer(engine: Engine) -> list[BaseException]:
    """``WORKERS`` threads, each ``ROUNDS`` tenant transactions with the same statements,
    round by round."""
    sessions = sessionmaker(engine, class_=TenantSession)
    failures: list[BaseException] = []
    wrong: list[set[str]] = []
    # Every client finishes a round before any starts the next: the clients' transactions
    # interleave, so a client's next transaction often lands on another server connection.
    rounds = threading.Barrier(WORKERS)

    def work(n: int) -> None:
        tenant = (A, B)[n % 2]
        for _ in range(ROUNDS):
            rounds.wait()
            try:
                with bind(ctx(tenant)), sessions() as s:
                    seen = set(s.scalars(select(Project.tenant_id)).all())
                with tenant_transaction(engine, tenant) as conn:  # outside the ORM
                    seen |= set(conn.execute(text("SELECT tenant_id FROM projects")).scalars())
                with engine.begin() as conn:  # an adopter's own parameterised statement
                    conn.execute(text("SELECT CAST(:n AS int)"), {"n": n}).all()
                if seen != {tenant}:
                    wrong.append(seen)
            except DBAPIError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []  # whatever else happens, never another tenant's rows
    return failures


def pool_reset_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors the pool met resetting a connection it took back (it then discards it)."""
    return [
        str(record.exc_info[1])
        for record in caplog.records
        if record.name.startswith("sqlalchemy.pool") and record.exc_info
    ]


def plain_statements(engine: Engine) -> list[BaseException]:
    """The driver's fault alone: ``WORKERS`` threads, round by round, each running the
    same parameterised statement in its own transactions (psycopg prepares it on the
    fifth run, on whichever server connection that transaction had)."""
    failures: list[BaseException] = []
    rounds = threading.Barrier(WORKERS)

    def work() -> None:
        for n in range(ROUNDS):
            rounds.wait()
            try:
                with engine.begin() as conn:
                    conn.execute(text("SELECT CAST(:n AS int)"), {"n": n}).all()
            except DBAPIError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_without_the_pooler_options_prepared_statements_break(
    bounced: Bounced, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(bounced.url, pool_size=WORKERS)
    try:
        failures = plain_statements(engine)
    finally:
        engine.dispose()
    # The statements fail in the request, or in the pool's reset when it takes the
    # connection back (which then discards it): either way, the named statement is missing
    # on the server connection the transaction landed on, or already there.
    seen = [str(getattr(f, "orig", f)) for f in failures] + pool_reset_failures(caplog)
    assert seen, "the fault did not show: this test no longer proves the fix below"
    assert all("prepared statement" in message for message in seen), seen


def test_with_the_pooler_options_nothing_fails(
    bounced: Bounced, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(
        bounced.url,
        pool_size=WORKERS,
        **pooler_options(bounced.url, "transaction"),
    )
    try:
        assert plain_statements(engine) == []  # the fault above, gone
        assert hammer(engine) == []  # and the library's own paths
    finally:
        engine.dispose()
    assert pool_reset_failures(caplog) == []
    assert_no_setting_left(bounced)


@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
def test_async_sessions_through_the_pooler_never_fail_nor_cross(
    bounced: Bounced, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = bounced.url.replace("postgresql+psycopg", driver, 1)

    async def run() -> tuple[list[BaseException], list[set[str]]]:
        engine = create_async_engine(url, pool_size=WORKERS, **pooler_options(url, "transaction"))
        sessions = async_sessionmaker(engine, class_=AsyncTenantSession)
        failures: list[BaseException] = []
        wrong: list[set[str]] = []

        async def work(n: int) -> None:
            tenant = (A, B)[n % 2]
            for _ in range(ROUNDS):
                try:
                    with bind(ctx(tenant)):
                        async with sessions() as s:
                            seen = set((await s.scalars(select(Project.tenant_id))).all())
                    if seen != {tenant}:
                        wrong.append(seen)
                except DBAPIError as exc:
                    failures.append(exc)

        try:
            await asyncio.gather(*(work(n) for n in range(WORKERS)))
        finally:
            await engine.dispose()
        return failures, wrong

    failures, wrong = asyncio.run(run())
    assert (failures, wrong, pool_reset_failures(caplog)) == ([], [], [])
    assert_no_setting_left(bounced)


def assert_no_setting_left(bounced: Bounced) -> None:
    """Plain connections through the pooler (every server connection of the pool, in
    turn) carry no tenant setting and see no rows."""
    engine = create_engine(bounced.url, connect_args={"prepare_threshold": None})
    try:
        for _ in range(6):
            with engine.connect() as conn:
                setting = conn.execute(
                    text("SELECT current_setting('tenancy.tenant_id', true)")
                ).scalar()
                rows = conn.execute(text("SELECT count(*) FROM projects")).scalar()
                conn.rollback()
            assert setting in (None, "") and rows == 0
    finally:
        engine.dispose()


def test_unknown_pooler_modes_are_refused() -> None:
    assert pooler_options("postgresql+psycopg://u@h/d", None) == {}
    assert pooler_options("postgresql+psycopg://u@h/d", "session") == {}
    assert pooler_options("postgresql+psycopg://u@h/d", "transaction") == {
        "connect_args": {"prepare_threshold": None},
        "execution_options": {"tenancy_pooler": "transaction"},
    }
    with pytest.raises(ConfigurationError, match="pooler mode"):
        pooler_options("postgresql+psycopg://u@h/d", "statement")
