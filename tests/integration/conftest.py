"""Integration fixtures: a scratch PostgreSQL database under RLS with an app role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text

from tenancy.scoping.rls import enable_rls, grant_app_role
from tests.support.postgres import app_role_database
from tests.support.scoping_models import A, B, Base


@pytest.fixture
def engines() -> Iterator[tuple[Engine, Engine]]:
    """(owner engine: superuser, app engine: NOSUPERUSER NOBYPASSRLS, DML only)."""

    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)
        for tenant in (A, B):
            conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": tenant})
            conn.execute(
                text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'p1', :n)"),
                {"t": tenant, "n": f"of {tenant[-1]}"},
            )

    with app_role_database(setup, pool_size=1, max_overflow=0) as pair:
        yield pair
