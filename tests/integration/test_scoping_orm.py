"""ORM scoping on SQLite and PostgreSQL (no RLS here): the ORM layer alone keeps tenants apart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Engine,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import (
    aliased,
    selectinload,
    sessionmaker,
)

from tenancy.context import bind
from tenancy.errors import (
    ConfigurationError,
    CrossTenantWrite,
    NoTenantContext,
    TenantContextConflict,
)
from tenancy.events import MemorySink
from tenancy.scoping import (
    TenantSession,
    system_scope,
)
from tests.support.asyncflavour import ASYNC_DRIVERS, AsyncRunner
from tests.support.postgres import LOCAL_ADMIN_URL, scratch_database
from tests.support.scoping_models import A, B, Base, Project, Task, ctx

FLAVOURS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    "sqlite-aiosqlite",
    pytest.param("postgres-psycopg-async", marks=pytest.mark.postgres),
    pytest.param("postgres-asyncpg", marks=pytest.mark.postgres),
]


@pytest.fixture(params=FLAVOURS)
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], TenantSession]]:
    """Sessions on each database, sync and (``tests.support.asyncflavour``) async."""
    with ExitStack() as stack:
        if request.param.startswith("sqlite"):
            engine = create_engine(f"sqlite:///{tmp_path / 'scoping.db'}")
        else:
            engine = create_engine(stack.enter_context(scratch_database(LOCAL_ADMIN_URL)))
        stack.callback(engine.dispose)
        _foreign_keys_on(engine)
        Base.metadata.create_all(engine)
        factory = _seeded(engine)
        driver = ASYNC_DRIVERS.get(request.param)
        if driver is None:
            yield factory
            return
        runner = AsyncRunner()
        stack.callback(runner.close)
        async_engine = runner.engine(engine, driver)
        _foreign_keys_on(async_engine.sync_engine)
        request.node.async_runner = runner
        yield runner.sessions(async_engine)


def _foreign_keys_on(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _fk_on(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA foreign_keys=ON")


def _seeded(engine: Engine) -> sessionmaker[TenantSession]:
    factory = sessionmaker(engine, class_=TenantSession)
    with system_scope("seed two tenants"), factory() as s:
        for tenant in (A, B):
            s.add(Project(tenant_id=tenant, id="p1", name=f"project of {tenant[-1]}"))
            s.add(Task(tenant_id=tenant, id="t1", project_id="p1", title=f"task of {tenant[-1]}"))
        s.commit()
    return factory


def test_tenant_id_is_the_first_primary_key_column() -> None:
    for model in (Project, Task):
        assert next(c.name for c in inspect(model).primary_key) == "tenant_id"
        assert not model.__table__.c.tenant_id.nullable


def test_reads_see_only_the_bound_tenant(sessions: Callable[[], TenantSession]) -> None:
    with bind(ctx(A)), sessions() as s:
        assert [p.name for p in s.scalars(select(Project))] == ["project of a"]
        assert s.get(Project, (B, "p1")) is None
        other = aliased(Project)
        assert s.scalar(select(func.count()).select_from(other)) == 1
        joined = s.execute(select(Task.title, Project.name).join(Task.project)).all()
        assert joined == [("task of a", "project of a")]


def test_relationship_and_eager_loads_are_scoped(sessions: Callable[[], TenantSession]) -> None:
    with bind(ctx(A)), sessions() as s:
        project = s.scalars(select(Project).options(selectinload(Project.tasks))).one()
        assert [t.title for t in project.tasks] == ["task of a"]
        task = s.scalars(select(Task)).one()
        assert task.project.name == "project of a"  # lazy load, scoped too


def test_bulk_update_and_delete_touch_only_the_bound_tenant(
    sessions: Callable[[], TenantSession],
) -> None:
    with bind(ctx(A)), sessions() as s:
        s.execute(update(Task).values(title="renamed"))
        s.execute(delete(Task).where(Task.id == "t1"))
        s.commit()
    with bind(ctx(B)), sessions() as s:
        assert [t.title for t in s.scalars(select(Task))] == ["task of b"]


def test_new_objects_are_stamped_and_foreign_tenant_inserts_refused(
    sessions: Callable[[], TenantSession],
) -> None:
    with bind(ctx(A)), sessions() as s:
        s.add(Project(id="p2", name="stamped"))
        s.commit()
        assert s.get(Project, (A, "p2")) is not None
        s.add(Project(tenant_id=B, id="p3", name="smuggled"))
        with pytest.raises(CrossTenantWrite):
            s.flush()
        s.rollback()
    with system_scope("check"), sessions() as s:
        assert s.scalar(select(func.count()).select_from(Project).where(Project.id == "p3")) == 0


def test_moving_a_row_to_another_tenant_is_refused(sessions: Callable[[], TenantSession]) -> None:
    with bind(ctx(A)), sessions() as s:
        project = s.scalars(select(Project)).one()
        project.tenant_id = B
        with pytest.raises(CrossTenantWrite):
            s.flush()


def test_foreign_key_cannot_point_at_another_tenants_row(
    sessions: Callable[[], TenantSession],
) -> None:
    from sqlalchemy.exc import IntegrityError

    with bind(ctx(A)), sessions() as s:
        s.add(Task(id="t9", project_id="p-only-in-b", title="dangling"))
        with system_scope("make a B-only project"), sessions() as admin:
            admin.add(Project(tenant_id=B, id="p-only-in-b", name="b only"))
            admin.commit()
        with pytest.raises(IntegrityError):
            s.flush()


def test_without_a_context_nothing_runs(sessions: Callable[[], TenantSession]) -> None:
    with sessions() as s:
        for run in (
            lambda: s.scalars(select(Project)).all(),
            lambda: s.execute(text("SELECT name FROM projects")).all(),
            lambda: s.get(Project, (A, "p1")),
            lambda: s.execute(delete(Project)),
        ):
            with pytest.raises(NoTenantContext):
                run()
    with system_scope("verify nothing changed"), sessions() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 2


def test_a_session_used_for_one_tenant_refuses_another(
    sessions: Callable[[], TenantSession],
) -> None:
    with sessions() as s:
        with bind(ctx(A)):
            project_a = s.scalars(select(Project)).one()
            s.commit()
        with bind(ctx(B)), pytest.raises(TenantContextConflict):
            s.scalars(select(Project)).all()
        with bind(ctx(B)), pytest.raises(TenantContextConflict):
            _ = project_a.name  # expired by commit: the refresh is refused too
        with pytest.raises(NoTenantContext):
            _ = project_a.name  # and with no tenant at all
        with bind(ctx(A)):
            assert project_a.tenant_id == A


def test_system_scope_needs_a_reason_and_is_recorded(
    sessions: Callable[[], TenantSession],
) -> None:
    sink = MemorySink()
    with pytest.raises(ConfigurationError), system_scope("  "):
        pass
    with system_scope("retention purge", events=sink), sessions() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 2
    assert [(e.action, e.reason) for e in sink.events] == [
        ("system_scope.entered", "retention purge")
    ]


def test_unique_per_tenant_lets_two_tenants_use_the_same_value(
    sessions: Callable[[], TenantSession],
) -> None:
    from sqlalchemy.exc import IntegrityError

    # Both tenants already have a task titled by the seed; the same title in B is fine,
    # a duplicate inside A is refused.
    with bind(ctx(B)), sessions() as s:
        s.add(Task(id="t2", project_id="p1", title="task of a"))
        s.commit()
    with bind(ctx(A)), sessions() as s:
        s.add(Task(id="t3", project_id="p1", title="task of a"))
        with pytest.raises(IntegrityError):
            s.flush()
