"""`tenancy db audit` on database objects that run with their owner's rights: SECURITY
DEFINER functions that build SQL at run time, and views (``security_invoker`` in every
spelling PostgreSQL accepts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tests.integration.test_db_audit_roles import Scene, checks, scene, seen_as
from tests.support.scoping_models import A, B

pytestmark = pytest.mark.postgres

COUNT_ROWS = """
    CREATE FUNCTION count_rows(tbl text) RETURNS bigint LANGUAGE plpgsql {security} AS $$
    DECLARE n bigint;
    BEGIN
        EXECUTE format('SELECT count(*) FROM %I', tbl) INTO n;
        RETURN n;
    END $$"""
RUN_SQL = """
    CREATE FUNCTION run_sql(stmt text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
    BEGIN EXECUTE stmt; END $$"""


@pytest.fixture
def db() -> Iterator[Scene]:
    with scene() as found:
        yield found


def called_as_app(db: Scene, tenant: str, *statements: str) -> list[object]:
    """Each statement's first value, as the app role inside ``tenant``; rolled back."""
    with db.app.connect() as conn, conn.begin() as transaction:
        conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": tenant})
        values = [conn.execute(text(s)).scalar() for s in statements]
        transaction.rollback()
    return values


def test_definer_with_dynamic_sql_owned_by_a_superuser_is_found(db: Scene) -> None:
    db.ddl(COUNT_ROWS.format(security="SECURITY DEFINER"))  # owned by the superuser owner
    # The attack is real: tenant A counts both tenants' projects through the function.
    assert called_as_app(
        db, A, "SELECT count(*) FROM projects", "SELECT count_rows('projects')"
    ) == [1, 2]
    found = checks(db.findings())
    assert found == {("security-definer-dynamic-sql", "public.count_rows")}
    # The table-name match alone never saw it: the table is named at run time.
    assert ("security-definer", "public.count_rows") not in found


def test_definer_with_dynamic_sql_owned_by_a_bypassrls_role_is_found(db: Scene) -> None:
    bypass = db.make_role("BYPASSRLS")
    db.ddl(
        f'GRANT SELECT ON projects TO "{bypass}"',
        COUNT_ROWS.format(security="SECURITY DEFINER"),
        f'ALTER FUNCTION count_rows(text) OWNER TO "{bypass}"',
    )
    assert called_as_app(db, A, "SELECT count_rows('projects')") == [2]
    found = [f for f in db.findings() if f.check == "security-definer-dynamic-sql"]
    assert [f.subject for f in found] == ["public.count_rows"]
    assert "BYPASSRLS" in found[0].message


def test_definer_with_dynamic_sql_owned_by_the_table_owner_is_found(db: Scene) -> None:
    # RLS stays forced on projects, so the owner is under it; but the owner may turn it
    # off, and a dynamic statement is where the caller's text becomes that statement.
    owner = db.make_role()
    db.ddl(
        f'ALTER TABLE projects OWNER TO "{owner}"',
        RUN_SQL,
        f'ALTER FUNCTION run_sql(text) OWNER TO "{owner}"',
    )
    assert seen_as(db.app, A) == {A}
    assert seen_as(
        db.app, A, "SELECT run_sql('ALTER TABLE public.projects DISABLE ROW LEVEL SECURITY')"
    ) == {A, B}
    found = [f for f in db.findings() if f.check == "security-definer-dynamic-sql"]
    assert [f.subject for f in found] == ["public.run_sql"]
    assert "public.projects's owner" in found[0].message


def test_functions_that_cannot_escape_rls_are_not_reported(db: Scene) -> None:
    plain = db.make_role()
    db.ddl(
        # Definer, superuser-owned, no dynamic SQL (EXECUTE only in a comment and strings),
        # touching no scoped table.
        """CREATE FUNCTION stamp() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
           BEGIN -- EXECUTE nothing
               RAISE NOTICE 'EXECUTE %', $q$EXECUTE$q$; /* EXECUTE */
               RETURN 'ok';
           END $$""",
        # Dynamic SQL, but as the caller: RLS applies.
        COUNT_ROWS.format(security="SECURITY INVOKER"),
        # Dynamic SQL as a definer that neither bypasses RLS nor owns a scoped table.
        COUNT_ROWS.format(security="SECURITY DEFINER").replace("count_rows", "count_plain"),
        f'GRANT SELECT ON projects TO "{plain}"',
        f'ALTER FUNCTION count_plain(text) OWNER TO "{plain}"',
    )
    assert called_as_app(
        db, A, "SELECT stamp()", "SELECT count_rows('projects')", "SELECT count_plain('projects')"
    ) == ["ok", 1, 1]
    assert db.findings() == []


# PostgreSQL keeps a reloption as spelled, and accepts what its parse_bool accepts: any
# non-empty prefix of true/yes/false/no, on/of/off and 1/0, in any case.
INVOKER = ["true", "TRUE", "'Tr'", "'t'", "yes", "'YE'", "'y'", "on", "'ON'", "1"]
DEFINER = ["false", "'f'", "'FALS'", "no", "'n'", "off", "'of'", "0"]


def test_security_invoker_is_read_in_every_spelling_postgres_accepts(db: Scene) -> None:
    spellings = {f"v_{n}": value for n, value in enumerate(INVOKER + DEFINER)}
    db.ddl(
        *(
            f"CREATE VIEW {name} WITH (security_invoker = {value}) AS SELECT * FROM projects"
            for name, value in spellings.items()
        ),
        "CREATE VIEW v_bare WITH (security_invoker) AS SELECT * FROM projects",
        "CREATE VIEW v_altered AS SELECT * FROM projects",
        "ALTER VIEW v_altered SET (security_invoker = 'ye')",
        "CREATE VIEW v_none AS SELECT * FROM projects",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
    )
    invoker = {n for n, v in spellings.items() if v in INVOKER} | {"v_bare", "v_altered"}
    definer = {n for n, v in spellings.items() if v in DEFINER} | {"v_none"}
    with db.owner.connect() as conn:
        stored = {
            name: option
            for name, option in conn.execute(
                text(
                    "SELECT relname, reloptions[1] FROM pg_class"
                    " WHERE relname IN ('v_3', 'v_altered')"
                )
            )
        }
    assert stored == {"v_3": "security_invoker=t", "v_altered": "security_invoker=ye"}
    # The spelling matters: invoker views keep RLS, the others read as their superuser owner.
    views = sorted(invoker | definer)
    counts = called_as_app(db, A, *(f"SELECT count(*) FROM {v}" for v in views))
    assert {v for v, n in zip(views, counts, strict=True) if n == 1} == invoker
    assert {v for v, n in zip(views, counts, strict=True) if n == 2} == definer
    assert checks(db.findings()) == {("view-not-security-invoker", f"public.{v}") for v in definer}
