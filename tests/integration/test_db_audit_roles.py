"""`tenancy db audit` on roles: memberships that ``SET ROLE`` escalates through, and
defaults of the tenant setting that start a new session inside a tenant.

Each attack is shown to be real first (the app role reads another tenant's row), then
the auditor is shown to report it; each harmless look-alike is shown to be harmless and
not reported. The helpers here are shared with the other ``test_db_audit_*`` files.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tenancy.cli import main
from tenancy.scoping.audit import Finding, audit
from tenancy.scoping.rls import enable_rls, grant_app_role
from tests.support.postgres import LOCAL_ADMIN_URL, app_role_database
from tests.support.scoping_models import A, B, Base

pytestmark = pytest.mark.postgres


@dataclass(frozen=True, slots=True)
class Scene:
    """A scratch database with ``projects`` (one row per tenant A and B) under RLS, its
    superuser owner, the app role, and ``make_role`` for extra NOLOGIN roles."""

    owner: Engine
    app: Engine
    make_role: Callable[..., str]

    @property
    def role(self) -> str:
        return str(self.app.url.username)

    @property
    def database(self) -> str:
        return str(self.app.url.database)

    def ddl(self, *statements: str) -> None:
        """As the owner; ``{role}``, ``{db}`` name the app role and database, quoted."""
        with self.owner.begin() as conn:
            for statement in statements:
                conn.execute(text(statement.format(role=f'"{self.role}"', db=f'"{self.database}"')))

    def findings(self) -> list[Finding]:
        with self.app.connect() as conn:
            return audit(conn)

    def cli_audit(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        code = main(["db", "audit", "--url", self.app.url.render_as_string(hide_password=False)])
        return code, capsys.readouterr().out


def setup_projects(conn: Connection, role: str) -> None:
    Base.metadata.create_all(conn)
    enable_rls(conn, Base.metadata.sorted_tables)
    grant_app_role(conn, role, Base.metadata.sorted_tables)
    for tenant in (A, B):
        conn.execute(
            text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'p1', 'x')"), {"t": tenant}
        )


@contextmanager
def scene() -> Iterator[Scene]:
    """The database is dropped before the extra roles, which may own objects in it."""
    made: list[str] = []
    admin = create_engine(LOCAL_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def make_role(attributes: str = "") -> str:
        name = f"tenancy_extra_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{name}" NOLOGIN {attributes}'))
        made.append(name)
        return name

    try:
        with app_role_database(
            setup_projects, prefix="tenancy_audit", pool_size=1, max_overflow=0
        ) as (owner, app):
            yield Scene(owner, app, make_role)
    finally:
        with admin.connect() as conn:
            for name in reversed(made):
                conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def db() -> Iterator[Scene]:
    with scene() as found:
        yield found


def seen_as(app: Engine, tenant: str, *then: str) -> set[str]:
    """The tenants whose projects the app role sees with ``tenant`` set, after running
    ``then`` (e.g. ``SET LOCAL ROLE``) in the same transaction, which is rolled back."""
    with app.connect() as conn, conn.begin() as transaction:
        conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": tenant})
        for statement in then:
            conn.execute(text(statement))
        seen = set(conn.execute(text("SELECT tenant_id FROM projects")).scalars())
        transaction.rollback()
    return seen


def new_session(app: Engine, *then: str) -> tuple[str | None, set[str]]:
    """A brand-new session of the app role (no pool): after ``then``, the tenant setting
    it holds and whose projects it sees without setting one."""
    engine = create_engine(app.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for statement in then:
                conn.execute(text(statement))
            setting = conn.execute(
                text("SELECT current_setting('tenancy.tenant_id', true)")
            ).scalar()
            seen = set(conn.execute(text("SELECT tenant_id FROM projects")).scalars())
    finally:
        engine.dispose()
    return setting, seen


def checks(found: list[Finding]) -> set[tuple[str, str]]:
    return {(f.check, f.subject) for f in found}


# -- memberships ---------------------------------------------------------------------------


def bypassrls_role(db: Scene) -> tuple[str, tuple[str, ...]]:
    target = db.make_role("BYPASSRLS")
    db.ddl(f'GRANT SELECT ON projects TO "{target}"', f'GRANT "{target}" TO {{role}}')
    return target, ()


def superuser_role(db: Scene) -> tuple[str, tuple[str, ...]]:
    target = db.make_role("SUPERUSER")
    db.ddl(f'GRANT "{target}" TO {{role}}')
    return target, ()


def table_owner_role(db: Scene) -> tuple[str, tuple[str, ...]]:
    # FORCE stays on: the owner is under RLS too, but may switch it off.
    target = db.make_role()
    db.ddl(f'ALTER TABLE projects OWNER TO "{target}"', f'GRANT "{target}" TO {{role}}')
    return target, ("ALTER TABLE projects NO FORCE ROW LEVEL SECURITY",)


def two_hops_noinherit(db: Scene) -> tuple[str, tuple[str, ...]]:
    middle, target = db.make_role(), db.make_role("BYPASSRLS")
    db.ddl(
        f'GRANT SELECT ON projects TO "{target}"',
        f'GRANT "{target}" TO "{middle}"',
        f'GRANT "{middle}" TO {{role}}',
        "ALTER ROLE {role} NOINHERIT",
    )
    return target, ()


@pytest.mark.parametrize(
    "grant",
    [bypassrls_role, superuser_role, table_owner_role, two_hops_noinherit],
    ids=lambda g: g.__name__,
)
def test_membership_that_set_role_escalates_through_is_found(
    db: Scene,
    grant: Callable[[Scene], tuple[str, tuple[str, ...]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert db.findings() == []
    target, then = grant(db)
    # The attack is real: as the app role, tenant A's session reads tenant B's project.
    assert seen_as(db.app, A) == {A}
    assert seen_as(db.app, A, f'SET LOCAL ROLE "{target}"', *then) == {A, B}
    found = [f for f in db.findings() if f.check == "app-role-membership"]
    assert [f.subject for f in found] == [db.role]
    assert f"member of {target!r}" in found[0].message
    if grant is two_hops_noinherit:
        assert found[0].message.count(" -> ") == 2  # app -> middle -> target
    code, out = db.cli_audit(capsys)
    assert code == 1 and f"FAIL app-role-membership: {db.role}: member of" in out


def test_membership_in_a_plain_dml_role_is_not_reported(db: Scene) -> None:
    plain = db.make_role()
    db.ddl(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON projects TO "{plain}"',
        f'GRANT "{plain}" TO {{role}}',
    )
    assert seen_as(db.app, A, f'SET LOCAL ROLE "{plain}"') == {A}  # still under RLS
    assert db.findings() == []


# -- defaults of the tenant setting ---------------------------------------------------------

# ALTER ROLE ALL SET (every role, every database) is the one form not run here: on a
# shared server it would start every other session inside tenant A too.
ALL_IN_DATABASE = "ALTER DATABASE (or ALTER ROLE ALL IN DATABASE) SET"
DEFAULTS = [
    ("ALTER ROLE {role} SET tenancy.tenant_id = '%s'", "ALTER ROLE {role} SET"),
    (
        "ALTER ROLE {role} IN DATABASE {db} SET tenancy.tenant_id = '%s'",
        "ALTER ROLE {role} IN DATABASE SET",
    ),
    ("ALTER DATABASE {db} SET tenancy.tenant_id = '%s'", ALL_IN_DATABASE),
    ("ALTER ROLE ALL IN DATABASE {db} SET tenancy.tenant_id = '%s'", ALL_IN_DATABASE),
]


@pytest.mark.parametrize(("ddl", "source"), DEFAULTS, ids=[d[0][:28] for d in DEFAULTS])
def test_default_of_the_tenant_setting_is_found(
    db: Scene, ddl: str, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_session(db.app) == (None, set())
    db.ddl(ddl % A)
    # The attack is real: a new session starts inside tenant A and reads its rows.
    assert new_session(db.app) == (A, {A})
    found = [f for f in db.findings() if f.check == "tenant-setting-default"]
    assert [f.subject for f in found] == [db.role]
    assert found[0].message.startswith(source.format(role=db.role) + f" tenancy.tenant_id = {A!r}")
    code, out = db.cli_audit(capsys)
    assert code == 1 and f"FAIL tenant-setting-default: {db.role}" in out


def test_default_on_a_group_role_does_not_reach_the_app_and_is_not_reported(db: Scene) -> None:
    group = db.make_role()
    db.ddl(
        f'GRANT SELECT ON projects TO "{group}"',
        f'GRANT "{group}" TO {{role}}',
        f"ALTER ROLE \"{group}\" SET tenancy.tenant_id = '{A}'",
    )
    # PostgreSQL applies only the login role's own defaults, and SET ROLE applies none.
    assert new_session(db.app) == (None, set())
    assert new_session(db.app, f'SET ROLE "{group}"') == (None, set())
    assert db.findings() == []


def test_empty_default_overriding_a_tenant_is_not_reported(db: Scene) -> None:
    db.ddl(f"ALTER DATABASE {{db}} SET tenancy.tenant_id = '{A}'")
    assert "tenant-setting-default" in {f.check for f in db.findings()}
    # The more specific default wins, as PostgreSQL applies them: the session starts empty.
    db.ddl("ALTER ROLE {role} IN DATABASE {db} SET tenancy.tenant_id = ''")
    assert new_session(db.app) == ("", set())
    assert db.findings() == []
