"""Adopters' own ORM code: statements, reused sessions, the identity map, session settings.

Each test runs on SQLite (the ORM layer is the only layer there) and on PostgreSQL as the
application role under forced RLS, with ``TenantSession`` and again with
``AsyncTenantSession`` over each async driver (aiosqlite, psycopg async, asyncpg; see
``tests.support.asyncflavour``). Refusals must come from the ORM layer, *before any SQL
is sent* (counted on the engine), so RLS is never what saves the day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import sessionmaker

from tenancy.context import bind
from tenancy.errors import CrossTenantWrite, NoTenantContext, TenantContextConflict
from tenancy.scoping import TenantSession, system_scope
from tenancy.scoping.rls import enable_rls, grant_app_role
from tests.support.asyncflavour import ASYNC_DRIVERS, AsyncRunner
from tests.support.postgres import app_role_database
from tests.support.scoping_models import A, B, Base, Project, Task, ctx


@dataclass
class Db:
    """The engine the sessions use, an owner's view of the truth, and a SQL counter."""

    app: Engine
    owner: Engine
    sent: list[str] = field(default_factory=list)
    make: Callable[[], TenantSession] | None = None  # the async flavours' sessions

    @property
    def sessions(self) -> Callable[[], TenantSession]:
        return self.make or sessionmaker(self.app, class_=TenantSession)

    def rows(self) -> list[tuple[str, str, str]]:
        with self.owner.connect() as conn:
            return [
                (t[-1], i, n)
                for t, i, n in conn.execute(
                    text("SELECT tenant_id, id, name FROM projects ORDER BY tenant_id, id")
                )
            ]


def _seed(conn: Connection) -> None:
    for tenant in (A, B):
        conn.execute(
            insert(Project.__table__).values(tenant_id=tenant, id="p1", name=f"of {tenant[-1]}")
        )
        conn.execute(
            insert(Task.__table__).values(
                tenant_id=tenant, id="t1", project_id="p1", title=f"task of {tenant[-1]}"
            )
        )


FLAVOURS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    "sqlite-aiosqlite",
    pytest.param("postgres-psycopg-async", marks=pytest.mark.postgres),
    pytest.param("postgres-asyncpg", marks=pytest.mark.postgres),
]


@pytest.fixture(params=FLAVOURS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    flavour: str = request.param
    if flavour.startswith("sqlite"):
        engine = create_engine(f"sqlite:///{tmp_path / 'statements.db'}")
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            _seed(conn)
        yield from _flavoured(request, Db(app=engine, owner=engine))
        engine.dispose()
        return

    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        _seed(conn)  # as the owner, before RLS is forced
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)

    with app_role_database(setup, pool_size=1, max_overflow=0) as (owner, app):
        yield from _flavoured(request, Db(app=app, owner=owner))


def _flavoured(request: pytest.FixtureRequest, db: Db) -> Iterator[Db]:
    driver = ASYNC_DRIVERS.get(request.param)
    if driver is None:
        yield from _counted(db)
        return
    runner = AsyncRunner()
    engine = runner.engine(db.app, driver, pool_size=1, max_overflow=0)
    request.node.async_runner = runner
    try:
        yield from _counted(
            Db(app=engine.sync_engine, owner=db.owner, make=runner.sessions(engine))
        )
    finally:
        runner.close()


def _counted(db: Db) -> Iterator[Db]:
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        db.sent.append(statement)

    for engine in {db.app, db.owner}:
        event.listen(engine, "before_cursor_execute", _count)
    yield db


def _refused_before_sql(db: Db, run: Any, error: type[Exception] = CrossTenantWrite) -> None:
    """``run(session)`` under tenant A raises ``error`` having sent no SQL, and changed
    nothing."""
    before = db.rows()
    with bind(ctx(A)), db.sessions() as s:
        s.scalars(select(Project)).all()  # the transaction (and its setting) is open
        sent = len(db.sent)
        with pytest.raises(error):
            run(s)
        assert db.sent[sent:] == [], "the statement reached the database"
        s.rollback()
    assert db.rows() == before


# -- ORM-enabled statements ------------------------------------------------------------


def test_update_setting_another_tenant_is_refused_before_sql(db: Db) -> None:
    _refused_before_sql(db, lambda s: s.execute(update(Project).values(tenant_id=B)))
    _refused_before_sql(
        db,
        lambda s: s.execute(
            update(Project).where(Project.id == "p1").values(tenant_id=B, name="moved")
        ),
    )
    # A value that cannot be checked before it runs is refused too.
    _refused_before_sql(db, lambda s: s.execute(update(Project).values(tenant_id=Project.name)))


def test_update_keeping_the_bound_tenant_runs(db: Db) -> None:
    with bind(ctx(A)), db.sessions() as s:
        s.execute(update(Project).values(tenant_id=A, name="kept"))
        s.commit()
    assert db.rows() == [("a", "p1", "kept"), ("b", "p1", "of b")]


def test_insert_for_another_tenant_is_refused_before_sql(db: Db) -> None:
    _refused_before_sql(
        db, lambda s: s.execute(insert(Project).values(tenant_id=B, id="x", name="smuggled"))
    )
    _refused_before_sql(
        db,
        lambda s: s.execute(
            insert(Project).values(
                [
                    {"tenant_id": A, "id": "x", "name": "ok"},
                    {"tenant_id": B, "id": "y", "name": "smuggled"},
                ]
            )
        ),
    )
    _refused_before_sql(
        db,
        lambda s: s.execute(
            insert(Project),
            [{"id": "x", "name": "ok"}, {"tenant_id": B, "id": "y", "name": "smuggled"}],
        ),
    )
    _refused_before_sql(
        db, lambda s: s.execute(insert(Project.__table__).values(tenant_id=B, id="x", name="core"))
    )


def test_insert_without_a_tenant_is_stamped(db: Db) -> None:
    with bind(ctx(A)), db.sessions() as s:
        s.execute(insert(Project).values(id="v", name="values"))
        s.execute(
            insert(Project).values(
                [{"id": "m1", "name": "multi"}, {"tenant_id": A, "id": "m2", "name": "multi"}]
            )
        )
        s.execute(insert(Project), [{"id": "b1", "name": "bulk"}, {"id": "b2", "name": "bulk"}])
        s.execute(insert(Project.__table__).values(id="c", name="core"))
        s.commit()
    assert db.rows() == [
        ("a", "b1", "bulk"),
        ("a", "b2", "bulk"),
        ("a", "c", "core"),
        ("a", "m1", "multi"),
        ("a", "m2", "multi"),
        ("a", "p1", "of a"),
        ("a", "v", "values"),
        ("b", "p1", "of b"),
    ]


def test_bulk_update_by_primary_key_cannot_rename_another_tenants_row(db: Db) -> None:
    _refused_before_sql(
        db, lambda s: s.execute(update(Project), [{"tenant_id": B, "id": "p1", "name": "renamed"}])
    )
    _refused_before_sql(
        db,
        lambda s: s.bulk_update_mappings(
            Project, [{"tenant_id": B, "id": "p1", "name": "renamed"}]
        ),
    )
    # Without tenant_id in the key, the bound tenant's row is the one updated.
    with bind(ctx(A)), db.sessions() as s:
        s.execute(update(Project), [{"id": "p1", "name": "renamed"}])
        s.commit()
    assert db.rows() == [("a", "p1", "renamed"), ("b", "p1", "of b")]


def test_legacy_bulk_methods_stamp_or_refuse(db: Db) -> None:
    _refused_before_sql(
        db,
        lambda s: s.bulk_insert_mappings(
            Project, [{"tenant_id": B, "id": "x", "name": "smuggled"}]
        ),
    )
    _refused_before_sql(
        db, lambda s: s.bulk_save_objects([Project(tenant_id=B, id="x", name="smuggled")])
    )
    with bind(ctx(A)), db.sessions() as s:
        s.bulk_insert_mappings(Project, [{"id": "x", "name": "legacy"}])
        s.bulk_save_objects([Project(id="y", name="legacy")])
        s.commit()
    assert db.rows() == [
        ("a", "p1", "of a"),
        ("a", "x", "legacy"),
        ("a", "y", "legacy"),
        ("b", "p1", "of b"),
    ]


def test_insert_from_select_reads_only_the_bound_tenant(db: Db) -> None:
    with bind(ctx(A)), db.sessions() as s:
        s.execute(
            insert(Project).from_select(
                ["tenant_id", "id", "name"],
                select(literal(A), Project.id + "-copy", Project.name + " (copy)"),
            )
        )
        s.commit()
    # One copy, of A's row only: B's row was not read by the inner SELECT.
    assert db.rows() == [("a", "p1", "of a"), ("a", "p1-copy", "of a (copy)"), ("b", "p1", "of b")]
    _refused_before_sql(
        db,
        lambda s: s.execute(
            insert(Project).from_select(
                ["tenant_id", "id", "name"], select(literal(B), Project.id + "-x", Project.name)
            )
        ),
    )
    _refused_before_sql(
        db,
        lambda s: s.execute(
            insert(Project).from_select(
                ["tenant_id", "id", "name"], select(Project.name, Project.id + "-x", Project.name)
            )
        ),
    )
    _refused_before_sql(
        db,
        lambda s: s.execute(
            insert(Project).from_select(["id", "name"], select(Project.id + "-x", Project.name))
        ),
    )


def test_upsert_cannot_move_a_row_to_another_tenant(db: Db) -> None:
    dialect_insert = pg_insert if db.app.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(Project)
        .values(id="p1", name="x")
        .on_conflict_do_update(index_elements=["tenant_id", "id"], set_={"tenant_id": B})
    )
    _refused_before_sql(db, lambda s: s.execute(statement))


def test_delete_and_update_without_where_touch_only_the_bound_tenant(db: Db) -> None:
    with bind(ctx(A)), db.sessions() as s:
        s.execute(update(Project).values(name="all?"))
        s.execute(update(Project.__table__).values(name="core all?"))
        s.execute(delete(Task))
        s.execute(delete(Task.__table__))
        s.commit()
    assert db.rows() == [("a", "p1", "core all?"), ("b", "p1", "of b")]
    with db.owner.connect() as conn:
        assert list(conn.execute(text("SELECT tenant_id FROM tasks")).scalars()) == [B]


# -- reused sessions and the identity map ------------------------------------------------


def test_connection_of_a_session_is_refused_to_another_tenant_and_to_none(db: Db) -> None:
    with db.sessions() as s:
        with bind(ctx(A)):
            s.scalars(select(Project)).all()  # transaction begun for A
        with bind(ctx(B)), pytest.raises(TenantContextConflict):
            s.connection()
        with pytest.raises(NoTenantContext):
            s.connection()
        with bind(ctx(B)):
            for run in (
                lambda: s.execute(text("SELECT name FROM projects")),
                lambda: s.scalars(select(Project)).all(),
                lambda: s.get(Project, (A, "p1")),
                lambda: s.get(Project, (B, "p1")),
            ):
                with pytest.raises(TenantContextConflict):
                    run()
        s.rollback()
        with bind(ctx(B)), pytest.raises(TenantContextConflict):
            s.connection()  # the session stays A's after its transaction ends


def test_a_system_scope_transaction_refuses_tenant_use_until_it_ends(db: Db) -> None:
    with db.sessions() as s:
        with system_scope("migrate"):
            everything = s.scalars(select(Project)).all()
        with bind(ctx(A)):
            for run in (
                s.connection,
                lambda: s.scalars(select(Project)).all(),
                lambda: s.get(Project, (B, "p1")),
            ):
                with pytest.raises(TenantContextConflict):
                    run()
        assert len(everything) == (
            2 if db.app.dialect.name == "sqlite" else 0
        )  # RLS: app sees none


def test_identity_map_never_returns_another_tenants_object(db: Db) -> None:
    # A system-scope job loads every tenant's rows (as the owner: on PostgreSQL the app
    # role would see none), then the same session serves tenant A.
    sessions = sessionmaker(db.owner, class_=TenantSession, expire_on_commit=False)
    with sessions() as s:
        with system_scope("load everything"):
            loaded = s.scalars(select(Project)).all()
            s.commit()
        assert {p.tenant_id for p in loaded} == {A, B}
        with bind(ctx(A)):
            sent = len(db.sent)
            assert s.get(Project, (B, "p1")) is None
            assert len(db.sent) > sent, "answered from the identity map"
            mine = s.get(Project, (A, "p1"))
            assert mine is not None and mine.tenant_id == A
            with pytest.raises(CrossTenantWrite):
                s.merge(Project(tenant_id=B, id="p1", name="merged"))


def test_many_to_one_identity_hits_stay_in_the_tenant(db: Db) -> None:
    with bind(ctx(A)), db.sessions() as s:
        task = s.scalars(select(Task)).one()
        assert task.project.name == "of a"


# -- a tenant setting left at session level ------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "leak",
    [
        "SELECT set_config('tenancy.tenant_id', :b, false)",
        "SET tenancy.tenant_id = '{b}'",
    ],
)
def test_a_session_level_setting_never_outlives_its_checkout(leak: str) -> None:
    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        _seed(conn)
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)

    with app_role_database(setup, pool_size=1, max_overflow=0) as (_, app):
        sessions = sessionmaker(app, class_=TenantSession)
        with bind(ctx(A)), sessions() as s:
            # Adopter's code sets the tenant at session level inside a tenant session.
            s.execute(text(leak.format(b=B)), {"b": B})
            s.commit()
        # The same pooled connection (pool_size=1), now for a plain checkout ...
        with app.connect() as conn:
            assert conn.execute(
                text("SELECT current_setting('tenancy.tenant_id', true)")
            ).scalar() in (None, "")
            assert conn.execute(text("SELECT count(*) FROM projects")).scalar() == 0
        # ... and for a system-scope session.
        with system_scope("job"), sessions() as s:
            assert s.scalars(select(Project)).all() == []
