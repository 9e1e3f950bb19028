"""PostgreSQL RLS as the app role: it holds where the ORM layer cannot see (text SQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import sessionmaker

from tenancy.context import bind
from tenancy.scoping import TenantSession
from tests.support.scoping_models import A, B, ctx

pytestmark = pytest.mark.postgres


def names(engine: Engine, sql: str = "SELECT name FROM projects ORDER BY name") -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql)).scalars())


def test_text_sql_in_a_tenant_session_sees_only_its_tenant(engines: tuple[Engine, Engine]) -> None:
    owner, app = engines
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s:
        assert list(s.execute(text("SELECT name FROM projects")).scalars()) == ["of a"]
        s.execute(text("UPDATE projects SET name = 'hacked'"))
        s.execute(text("DELETE FROM projects WHERE tenant_id = :b"), {"b": B})
        s.commit()
    assert names(owner) == ["hacked", "of b"]


def test_without_the_setting_the_app_role_sees_nothing_and_writes_nothing(
    engines: tuple[Engine, Engine],
) -> None:
    owner, app = engines
    assert names(app) == []
    with pytest.raises(ProgrammingError, match="row-level security"), app.begin() as conn:
        conn.execute(
            text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'x', 'x')"), {"t": A}
        )
    assert names(owner) == ["of a", "of b"]


def test_insert_for_another_tenant_is_refused_by_with_check(engines: tuple[Engine, Engine]) -> None:
    owner, app = engines
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s, pytest.raises(ProgrammingError, match="row-level"):
        s.execute(
            text("INSERT INTO projects (tenant_id, id, name) VALUES (:b, 'x', 'x')"), {"b": B}
        )
    assert names(owner) == ["of a", "of b"]


def test_pooled_connection_never_carries_one_tenants_setting_into_another(
    engines: tuple[Engine, Engine],
) -> None:
    _, app = engines  # pool_size=1: every session below reuses the same connection
    sessions = sessionmaker(app, class_=TenantSession)
    with bind(ctx(A)), sessions() as s:
        assert list(s.execute(text("SELECT name FROM projects")).scalars()) == ["of a"]
        with pytest.raises(DBAPIError):
            s.execute(text("SELECT 1/0"))
        s.rollback()
    assert names(app) == []  # plain use after A's transaction: the setting died with it
    with bind(ctx(B)), sessions() as s:
        assert list(s.execute(text("SELECT name FROM projects")).scalars()) == ["of b"]


def test_truncate_is_not_granted_to_the_app_role(engines: tuple[Engine, Engine]) -> None:
    owner, app = engines
    with pytest.raises(ProgrammingError, match="permission denied"), app.begin() as conn:
        conn.execute(text("TRUNCATE projects CASCADE"))
    assert names(owner) == ["of a", "of b"]


def test_a_superuser_bypasses_rls_which_is_why_the_app_never_connects_as_one(
    engines: tuple[Engine, Engine],
) -> None:
    owner, app = engines
    assert names(owner) == ["of a", "of b"]
    with owner.connect() as conn:
        flags = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert tuple(flags) == (True, True)
    with app.connect() as conn:
        flags = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert tuple(flags) == (False, False)


def test_table_owner_and_bypassrls_role_bypass_which_is_why_force_and_the_split_matter(
    engines: tuple[Engine, Engine],
) -> None:
    owner, app = engines
    suffix = str(app.url.username).rsplit("_", 1)[1]
    table_owner, bypasser = f"tenancy_owner_{suffix}", f"tenancy_bypass_{suffix}"
    admin_url = owner.url
    with owner.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{table_owner}" LOGIN NOSUPERUSER NOBYPASSRLS'))
        conn.execute(text(f'CREATE ROLE "{bypasser}" LOGIN NOSUPERUSER BYPASSRLS'))
        conn.execute(text(f'ALTER TABLE projects OWNER TO "{table_owner}"'))
        conn.execute(text(f'GRANT SELECT ON projects TO "{bypasser}"'))
        conn.execute(text("ALTER TABLE projects NO FORCE ROW LEVEL SECURITY"))
    try:
        as_owner = create_engine(admin_url.set(username=table_owner))
        as_bypasser = create_engine(admin_url.set(username=bypasser))
        assert names(as_owner) == ["of a", "of b"]  # owner, RLS not forced: bypass
        assert names(as_bypasser) == ["of a", "of b"]  # BYPASSRLS: bypass
        assert names(app) == []  # the app role: no setting, no rows
        with owner.begin() as conn:
            conn.execute(text("ALTER TABLE projects FORCE ROW LEVEL SECURITY"))
        assert names(as_owner) == []  # forced: even the owner is held
        as_owner.dispose()
        as_bypasser.dispose()
    finally:
        with owner.begin() as conn:
            conn.execute(text("ALTER TABLE projects OWNER TO postgres"))
            conn.execute(text(f'REVOKE ALL ON projects FROM "{bypasser}"'))
            conn.execute(text(f'DROP ROLE "{table_owner}"'))
            conn.execute(text(f'DROP ROLE "{bypasser}"'))
