"""`tenancy db audit --citus`: what would keep a table from being distributed by tenant_id,
as warnings that never fail the audit; on a real database built to hold each case."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from tenancy.scoping.audit import audit
from tenancy.scoping.audit.citus import citus_findings
from tenancy.scoping.rls import enable_rls, grant_app_role
from tests.support.postgres import app_role_database

pytestmark = pytest.mark.postgres

metadata = MetaData()
countries = Table("countries", metadata, Column("code", String(2), primary_key=True))
projects = Table(
    "projects",
    metadata,
    Column("tenant_id", String(36)),
    Column("id", String(36)),
    PrimaryKeyConstraint("tenant_id", "id"),
)
tasks = Table(  # ready: keys lead with tenant_id; a reference table may be referenced
    "tasks",
    metadata,
    Column("tenant_id", String(36)),
    Column("id", String(36)),
    Column("project_id", String(36)),
    Column("country", String(2), ForeignKey("countries.code")),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id", "project_id"], ["projects.tenant_id", "projects.id"]),
    UniqueConstraint("tenant_id", "project_id", name="tasks_one_per_project"),
)
legacy_parents = Table(
    "legacy_parents",
    metadata,
    Column("tenant_id", String(36)),
    Column("id", String(36), primary_key=True),  # a global key: not distributable
)
legacy = Table(
    "legacy",
    metadata,
    Column("tenant_id", String(36)),
    Column("id", String(36), primary_key=True),
    Column("email", String(100), unique=True),
    Column("parent_id", String(36), ForeignKey("legacy_parents.id", name="legacy_parent_fk")),
)
OWNED = [projects, tasks, legacy_parents, legacy]


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, Engine]]:
    def setup(conn: Connection, role: str) -> None:
        metadata.create_all(conn)
        enable_rls(conn, OWNED)
        grant_app_role(conn, role, [*OWNED, countries])

    with app_role_database(setup, prefix="tenancy_citus") as pair:
        yield pair


def test_keys_without_tenant_id_are_warned_about_and_ready_tables_are_not(
    database: tuple[Engine, Engine],
) -> None:
    _, app = database
    with app.connect() as conn:
        warnings = {
            (w.check, w.subject, w.message.split(" lacks")[0].split(" to ")[0])
            for w in citus_findings(conn)
        }
        assert audit(conn) == []  # the isolation audit itself passes: these are readiness
    assert warnings == {
        ("citus-unique", "public.legacy", "primary key legacy_pkey"),
        ("citus-unique", "public.legacy", "unique index legacy_email_key"),
        ("citus-unique", "public.legacy_parents", "primary key legacy_parents_pkey"),
        ("citus-foreign-key", "public.legacy", "foreign key legacy_parent_fk"),
    }


def test_the_cli_prints_warnings_and_keeps_the_audits_exit_code(
    database: tuple[Engine, Engine],
) -> None:
    _, app = database
    url = app.url.render_as_string(hide_password=False)
    run = subprocess.run(
        [sys.executable, "-m", "tenancy.cli", "db", "audit", "--url", url, "--citus"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    warned = [line for line in run.stdout.splitlines() if line.startswith("WARN citus-")]
    assert len(warned) == 4 and "public.tasks" not in run.stdout
    plain = subprocess.run(
        [sys.executable, "-m", "tenancy.cli", "db", "audit", "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 0 and "WARN" not in plain.stdout
