"""AsyncTenantSession under asyncio's own hazards, on PostgreSQL as the application role
under forced RLS, with both async drivers (psycopg async, asyncpg).

The sync session's whole matrix runs on the async session too (``test_scoping_orm``,
``test_scoping_statements``, ``tests/unit/keys/test_columns``: the async flavours). Here:
many tasks on one engine, cancellation, context copied into tasks, pooled connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from tenancy.context import bind
from tenancy.errors import CrossTenantWrite, NoTenantContext
from tenancy.scoping import AsyncTenantSession, system_scope
from tenancy.scoping.rls import enable_rls, grant_app_role
from tests.support.postgres import app_role_database
from tests.support.scoping_models import A, B, Base, Project, Task, ctx

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

DRIVERS = ["postgresql+psycopg", "postgresql+asyncpg"]


@dataclass
class Db:
    owner: Engine  # the truth, as the owner (RLS forced on it too: read with the setting)
    app_url: str  # the application role's URL (sync driver)


@pytest.fixture
def db() -> Iterator[Db]:
    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        for tenant in (A, B):
            conn.execute(
                text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'p1', :n)"),
                {"t": tenant, "n": f"of {tenant[-1]}"},
            )
            conn.execute(
                text(
                    "INSERT INTO tasks (tenant_id, id, project_id, title) "
                    "VALUES (:t, 't1', 'p1', :n)"
                ),
                {"t": tenant, "n": f"task of {tenant[-1]}"},
            )
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)

    with app_role_database(setup) as (owner, app):
        yield Db(owner=owner, app_url=app.url.render_as_string(hide_password=False))


@pytest.fixture(params=DRIVERS)
async def engine(request: pytest.FixtureRequest, db: Db) -> AsyncIterator[AsyncEngine]:
    url = db.app_url.replace("postgresql+psycopg", request.param, 1)
    eng = create_async_engine(url, pool_size=5, max_overflow=0)
    yield eng
    await eng.dispose()


def owner_rows(db: Db) -> list[tuple[str, str, str]]:
    """Every project row, read by the superuser owner (RLS does not bind a superuser)."""
    with db.owner.connect() as conn:
        return [
            (t, i, n) for t, i, n in conn.execute(text("SELECT tenant_id, id, name FROM projects"))
        ]


async def names_seen(sessions: async_sessionmaker[AsyncTenantSession]) -> set[str]:
    async with sessions() as s:
        return set((await s.scalars(select(Project.name))).all())


async def test_500_tasks_alternating_tenants_on_one_engine_never_cross(
    engine: AsyncEngine, db: Db
) -> None:
    sessions = async_sessionmaker(engine, class_=AsyncTenantSession)
    wrong_reads: list[tuple[str, set[str]]] = []

    async def work(n: int) -> tuple[str, str]:
        tenant = (A, B)[n % 2]
        with bind(ctx(tenant)):
            async with sessions() as s:
                project_id = f"n{n}"
                s.add(Project(id=project_id, name=f"{tenant[-1]}-{n}"))
                await asyncio.sleep(0)  # let the other tenant's tasks run in between
                await s.commit()
                seen = set((await s.scalars(select(Project.tenant_id))).all())
                if seen != {tenant}:
                    wrong_reads.append((tenant, seen))
            return tenant, project_id

    written = await asyncio.gather(*(work(n) for n in range(500)))
    assert wrong_reads == []  # 0 rows of another tenant seen
    stored = {(i, t) for t, i, _ in owner_rows(db)}
    # 0 inserts under the wrong tenant, and every acknowledged insert persisted.
    assert {(i, t) for t, i in written} <= stored
    assert all(name.startswith(t[-1]) for t, i, name in owner_rows(db) if i.startswith("n"))


async def test_a_cancelled_query_leaves_nothing_for_the_next_tenant(
    db: Db, request: pytest.FixtureRequest
) -> None:
    for driver in DRIVERS:
        url = db.app_url.replace("postgresql+psycopg", driver, 1)
        one = create_async_engine(url, pool_size=1, max_overflow=0)  # one connection: reused
        try:
            sessions = async_sessionmaker(one, class_=AsyncTenantSession)

            async def slow_for_a(sessions: async_sessionmaker[AsyncTenantSession]) -> None:
                with bind(ctx(A)):
                    async with sessions() as s:
                        # A's setting is in force when the task is cancelled mid-query.
                        await s.execute(text("SELECT pg_sleep(5)"))

            task = asyncio.create_task(slow_for_a(sessions))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with bind(ctx(B)):
                assert await names_seen(sessions) == {"of b"}, driver
            async with one.connect() as conn:  # a plain pooled connection: no setting
                setting = (
                    await conn.execute(text("SELECT current_setting('tenancy.tenant_id', true)"))
                ).scalar()
                rows = (await conn.execute(text("SELECT count(*) FROM projects"))).scalar()
            assert setting in (None, ""), driver
            assert rows == 0, driver  # no setting: RLS shows nothing
        finally:
            await one.dispose()


async def test_gather_inside_one_request_keeps_the_requests_tenant(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine, class_=AsyncTenantSession)
    with bind(ctx(A)):
        seen = await asyncio.gather(*(names_seen(sessions) for _ in range(20)))
    assert seen == [{"of a"}] * 20


async def test_a_task_spawned_under_a_and_awaited_under_b_keeps_a(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine, class_=AsyncTenantSession)
    with bind(ctx(A)):
        task = asyncio.create_task(names_seen(sessions))  # the context is copied here
    with bind(ctx(B)):
        assert await task == {"of a"}
        assert await names_seen(sessions) == {"of b"}


async def test_nothing_runs_without_a_tenant_and_writes_stay_in_it(
    engine: AsyncEngine, db: Db
) -> None:
    sessions = async_sessionmaker(engine, class_=AsyncTenantSession)
    before = owner_rows(db)
    async with sessions() as s:
        for statement in (select(Project), text("SELECT * FROM projects")):
            with pytest.raises(NoTenantContext):
                await s.execute(statement)
    with bind(ctx(A)):
        async with sessions() as s:
            s.add(Project(tenant_id=B, id="moved", name="planted"))
            with pytest.raises(CrossTenantWrite):
                await s.commit()
    assert owner_rows(db) == before
    with system_scope("an explicit, named job"):
        async with sessions() as s:
            # Under system scope the app role's RLS still hides every row: the setting is ''.
            assert (await s.scalars(select(Project))).all() == []


async def test_lazy_loads_are_refused_and_eager_loads_scoped(engine: AsyncEngine) -> None:
    from sqlalchemy.orm import selectinload

    sessions = async_sessionmaker(engine, class_=AsyncTenantSession)
    with bind(ctx(A)):
        async with sessions() as s:
            task = (await s.scalars(select(Task))).one()
            # MissingGreenlet, wrapped in StatementError by some drivers' statement path
            with pytest.raises((MissingGreenlet, StatementError), match="greenlet_spawn"):
                _ = task.project  # a lazy load would block the loop: refused
            project = (await s.scalars(select(Project).options(selectinload(Project.tasks)))).one()
            assert [t.title for t in project.tasks] == ["task of a"]


async def test_a_session_level_setting_never_outlives_its_checkout(
    db: Db, request: pytest.FixtureRequest
) -> None:
    for driver in DRIVERS:
        url = db.app_url.replace("postgresql+psycopg", driver, 1)
        one = create_async_engine(url, pool_size=1, max_overflow=0)
        try:
            sessions = async_sessionmaker(one, class_=AsyncTenantSession)
            with bind(ctx(A)):
                async with sessions() as s:
                    # Application code leaves A's tenant at session level (is_local false).
                    await s.execute(
                        text("SELECT set_config('tenancy.tenant_id', :t, false)"), {"t": A}
                    )
                    await s.commit()
            async with one.connect() as conn:
                leaked = (await conn.execute(text("SELECT count(*) FROM projects"))).scalar()
            assert leaked == 0, driver
        finally:
            await one.dispose()


def test_every_flavour_is_a_real_async_driver() -> None:
    for driver in DRIVERS:
        engine = create_async_engine(f"{driver}://u@127.0.0.1/db")
        assert engine.sync_engine.dialect.is_async, driver
