"""Integration fixtures: a scratch PostgreSQL database under RLS with an app role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from tenancy.scoping.rls import enable_rls, grant_app_role
from tests.support.postgres import LOCAL_ADMIN_URL, scratch_database
from tests.support.scoping_models import A, B, Base


@pytest.fixture
def engines() -> Iterator[tuple[Engine, Engine]]:
    """(owner engine: superuser, app engine: NOSUPERUSER NOBYPASSRLS, DML only)."""
    role = f"tenancy_app_{uuid.uuid4().hex[:8]}"
    try:
        with scratch_database(LOCAL_ADMIN_URL) as url:
            owner = create_engine(url)
            with owner.begin() as conn:
                Base.metadata.create_all(conn)
                enable_rls(conn, Base.metadata.sorted_tables)
                conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
                grant_app_role(conn, role, Base.metadata.sorted_tables)
                for tenant in (A, B):
                    conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"),
                                 {"t": tenant})
                    conn.execute(text("INSERT INTO projects (tenant_id, id, name) "
                                      "VALUES (:t, 'p1', :n)"),
                                 {"t": tenant, "n": f"of {tenant[-1]}"})
            app = create_engine(url.replace("postgres@", f"{role}@", 1), pool_size=1,
                                max_overflow=0)
            try:
                yield owner, app
            finally:
                app.dispose()
                owner.dispose()
    finally:
        # The role owns grants in the scratch database: drop it once that is gone.
        admin = create_engine(LOCAL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
