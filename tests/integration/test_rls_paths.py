"""RLS where the ORM layer cannot help: Core, views, partitions, COPY, cancelled work."""

from __future__ import annotations

import asyncio
import io

import psycopg
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import sessionmaker

from tenancy.context import bind, run_in_context
from tenancy.scoping import TenantSession
from tenancy.scoping.rls import enable_rls, partitions_of
from tests.support.scoping_models import A, B, Project, ctx

pytestmark = pytest.mark.postgres


def test_core_select_through_the_session_is_held_by_rls(engines: tuple[Engine, Engine]) -> None:
    # A Core select of the Table is not an ORM statement: no loader criteria. RLS holds.
    _, app = engines
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s:
        rows = s.execute(select(Project.__table__.c.name)).scalars().all()
    assert rows == ["of a"]


def test_view_over_a_scoped_table_needs_security_invoker(engines: tuple[Engine, Engine]) -> None:
    owner, app = engines
    role = app.url.username
    with owner.begin() as conn:
        conn.execute(
            text(
                "CREATE VIEW projects_invoker WITH (security_invoker = true) AS "
                "SELECT tenant_id, name FROM projects"
            )
        )
        conn.execute(text("CREATE VIEW projects_definer AS SELECT tenant_id, name FROM projects"))
        conn.execute(text(f'GRANT SELECT ON projects_invoker, projects_definer TO "{role}"'))
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s:
        invoker = s.execute(text("SELECT name FROM projects_invoker")).scalars().all()
        definer = s.execute(text("SELECT name FROM projects_definer ORDER BY name")).scalars().all()
    assert invoker == ["of a"]
    # A view without security_invoker runs as its owner: here a superuser, so it leaks.
    # This is why the auditor must reject such views.
    assert definer == ["of a", "of b"]


@pytest.fixture
def partitioned(engines: tuple[Engine, Engine]) -> Table:
    owner, app = engines
    metadata = MetaData()
    events = Table(
        "events",
        metadata,
        Column("tenant_id", String(36), primary_key=True),
        Column("id", Integer, primary_key=True),
        Column("body", String(100)),
        postgresql_partition_by="HASH (tenant_id)",
    )
    with owner.begin() as conn:
        metadata.create_all(conn)
        for i in range(2):
            conn.execute(
                text(
                    f"CREATE TABLE events_p{i} PARTITION OF events "
                    f"FOR VALUES WITH (MODULUS 2, REMAINDER {i})"
                )
            )
        enable_rls(conn, [events])
        role = app.url.username
        # Even if someone grants direct access to the partitions, their own policies hold.
        conn.execute(text(f'GRANT SELECT, INSERT ON events, events_p0, events_p1 TO "{role}"'))
        for tenant in (A, B):
            conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": tenant})
            conn.execute(
                text("INSERT INTO events VALUES (:t, 1, :b)"),
                {"t": tenant, "b": f"event of {tenant[-1]}"},
            )
    return events


def test_every_partition_gets_the_policy(
    engines: tuple[Engine, Engine], partitioned: Table
) -> None:
    owner, app = engines
    with owner.connect() as conn:
        partitions = partitions_of(conn, partitioned)
        forced = conn.execute(
            text(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                "WHERE relname IN ('events', 'events_p0', 'events_p1') ORDER BY relname"
            )
        ).all()
    assert sorted(partitions) == ["events_p0", "events_p1"]
    assert [tuple(r) for r in forced] == [
        ("events", True, True),
        ("events_p0", True, True),
        ("events_p1", True, True),
    ]
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s:
        seen = [
            body for p in partitions for body in s.execute(text(f"SELECT body FROM {p}")).scalars()
        ]
        assert seen == ["event of a"]
        with pytest.raises(ProgrammingError, match="row-level security"):
            s.execute(text(f"INSERT INTO {partitions[0]} VALUES (:b, 2, 'smuggled')"), {"b": B})
    with owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 2


def test_copy_to_is_filtered_and_copy_from_is_refused(engines: tuple[Engine, Engine]) -> None:
    owner, app = engines
    with app.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("SELECT set_config('tenancy.tenant_id', %s, true)", (A,))
            out = io.BytesIO()
            with cur.copy("COPY projects (name) TO STDOUT") as copy:
                for chunk in copy:
                    out.write(bytes(chunk))
            assert out.getvalue() == b"of a\n"
            with (
                pytest.raises(psycopg.Error, match="row-level security"),
                cur.copy("COPY projects (tenant_id, id, name) FROM STDIN") as copy,
            ):
                copy.write_row((B, "x", "smuggled"))
        raw.rollback()
    with owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM projects")).scalar() == 2


@pytest.mark.anyio
async def test_cancelled_query_does_not_carry_its_tenant_into_the_next(
    engines: tuple[Engine, Engine],
) -> None:
    _, app = engines  # pool_size=1: the cancelled work and the next request share it
    sessions = sessionmaker(app, class_=TenantSession)

    def slow_query_as_a() -> None:
        with sessions() as s:
            s.execute(text("SELECT pg_sleep(0.3), name FROM projects")).all()

    def read_as_b() -> list[str]:
        with sessions() as s:
            return list(s.execute(text("SELECT name FROM projects")).scalars())

    task = asyncio.ensure_future(asyncio.to_thread(run_in_context, ctx(A), slow_query_as_a))
    await asyncio.sleep(0.05)
    task.cancel()  # the request is gone; its thread finishes and returns the connection
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(run_in_context, ctx(B), read_as_b) == ["of b"]
    with app.connect() as conn:
        assert conn.execute(text("SELECT current_setting('tenancy.tenant_id', true)")).scalar() in (
            None,
            "",
        )


def test_error_inside_a_transaction_leaves_no_setting_behind(
    engines: tuple[Engine, Engine],
) -> None:
    _, app = engines
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s, pytest.raises(DBAPIError):
        s.execute(text("SELECT name FROM projects WHERE 1/0 = 1"))
    with bind(ctx(B)), sessions() as s:
        assert list(s.execute(text("SELECT name FROM projects")).scalars()) == ["of b"]


def test_with_the_orm_layer_off_rls_still_holds_for_orm_core_and_bulk(
    engines: tuple[Engine, Engine],
) -> None:
    from sqlalchemy import delete, update
    from sqlalchemy.orm import Session

    from tenancy.scoping.rls import set_tenant

    owner, app = engines
    with Session(app) as s:  # a plain Session: no loader criteria, no flush guard
        set_tenant(s.connection(), A)
        assert [p.name for p in s.scalars(select(Project))] == ["of a"]
        assert s.get(Project, (B, "p1")) is None
        table = Project.__table__
        s.execute(update(table).values(name="core-updated"))
        s.execute(update(Project).where(Project.tenant_id == B).values(name="orm-bulk"))
        s.execute(delete(Project).where(Project.tenant_id == B))
        s.commit()
    with owner.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, name FROM projects ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [(A, "core-updated"), (B, "of b")]
