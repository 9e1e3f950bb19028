"""`tenancy db matrix`: its JSON document, its command line, and what it refuses.

The helpers here (``snapshot``, ``cell``, ``url_of``, ``tenancy``) are shared with the
examples' tests, which run the matrix on the migrated worklogs schema and on mutants that
break it on purpose (``examples/tests/integration``, ``examples/tests/isolation``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, text

from tenancy.cli import main
from tenancy.scoping.audit import scoped_tables
from tenancy.scoping.rls import enable_rls, grant_app_role
from tenancy.testing.dbmatrix import (
    Cell,
    DatabaseMatrix,
    MatrixError,
    Outcome,
    access_matrix,
    access_matrix_for_url,
)
from tests.support.postgres import app_role_database
from tests.support.scoping_models import A, B, Base

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
JSON_KEYS = {
    "kind",
    "version",
    "generated_at",
    "database",
    "role",
    "server_version",
    "tenants",
    "tables",
    "cells",
    "findings",
    "summary",
}
CELL_KEYS = {"table", "operation", "setting", "target", "outcome", "rows", "detail"}


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def tenancy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenancy.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def snapshot(owner: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every scoped table and of the registry (if any), as the owner sees
    them."""
    prep = owner.dialect.identifier_preparer
    with owner.connect() as conn:
        names = [(t.schema, t.name) for t in scoped_tables(conn)]
        if conn.execute(text("SELECT to_regclass('public.tenancy_tenants')")).scalar():
            names.append(("public", "tenancy_tenants"))
        return {
            f"{schema}.{name}": sorted(
                (
                    tuple(row)
                    for row in conn.execute(
                        text(f"SELECT * FROM {prep.quote_schema(schema)}.{prep.quote(name)}")
                    )
                ),
                key=repr,
            )
            for schema, name in names
        }


def cell(matrix: DatabaseMatrix, table: str, operation: str, setting: str, target: str) -> Cell:
    found = [
        c
        for c in matrix.cells
        if (c.table, c.operation, c.setting, c.target) == (table, operation, setting, target)
    ]
    assert len(found) == 1, (table, operation, setting, target, found)
    return found[0]


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, Engine]]:
    """(owner, app role) engines on a scratch database: the shared scoping models under
    RLS, with rows of tenants A and B (no registry: tenants are named explicitly)."""

    def setup(conn: Connection, role: str) -> None:
        Base.metadata.create_all(conn)
        enable_rls(conn, Base.metadata.sorted_tables)
        grant_app_role(conn, role, Base.metadata.sorted_tables)
        for tenant in (A, B):
            conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": tenant})
            conn.execute(
                text("INSERT INTO projects (tenant_id, id, name) VALUES (:t, 'p1', 'x')"),
                {"t": tenant},
            )

    with app_role_database(setup, prefix="tenancy_matrix") as pair:
        yield pair


def test_json_has_the_documented_shape_and_round_trips(database: tuple[Engine, Engine]) -> None:
    _, app = database
    with app.connect() as conn:
        conn.execute(text("SELECT 1"))  # a transaction is open: the matrix nests in it
        matrix = access_matrix(conn, tenants=[A, B])
        assert conn.in_transaction()
    document = json.loads(json.dumps(matrix.to_json()))
    assert set(document) == JSON_KEYS
    assert (document["kind"], document["version"]) == ("tenancy.db-matrix", 1)
    assert ":" not in document["database"].split("@")[0].split("//")[1]  # no password
    assert all(set(c) == CELL_KEYS for c in document["cells"])
    assert set(document["summary"]) == {*map(str, Outcome), "findings"}
    assert DatabaseMatrix.from_json(document) == matrix
    with pytest.raises(MatrixError):
        DatabaseMatrix.from_json({**document, "version": 2})


def test_cli_end_to_end(database: tuple[Engine, Engine], tmp_path: Path) -> None:
    _, app = database
    out = tmp_path / "matrix.json"
    result = tenancy(
        "db", "matrix", "--url", url_of(app), "--tenant", A, "--tenant", B, "--json", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"tenants: T1 = {A}, T2 = {B}" in result.stdout
    assert "public.projects" in result.stdout
    assert result.stdout.rstrip().endswith("OK: RLS held in every cell")
    document = json.loads(out.read_text())
    assert set(document) == JSON_KEYS
    assert document["tenants"] == [A, B]
    assert document["summary"]["leaked"] == 0 and document["summary"]["enforced"] > 0
    quiet = tenancy(
        "db", "matrix", "--url", url_of(app), "--tenant", B, "--tenant", A, "--json", "-", "--quiet"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["tenants"] == [B, A]
    assert len(quiet.stderr.splitlines()) == 1  # the summary only


def test_an_async_driver_url_runs_the_same_cells_through_that_driver(
    database: tuple[Engine, Engine],
) -> None:
    owner, app = database
    before = snapshot(owner)
    sync = access_matrix_for_url(url_of(app), tenants=[A, B])
    url = url_of(app).replace("postgresql+psycopg", "postgresql+asyncpg", 1)
    through_asyncpg = access_matrix_for_url(url, tenants=[A, B])
    assert through_asyncpg.database.startswith("postgresql+asyncpg://")
    cells = [(c.table, c.operation, c.setting, c.target, c.outcome) for c in sync.cells]
    assert [
        (c.table, c.operation, c.setting, c.target, c.outcome) for c in through_asyncpg.cells
    ] == cells
    assert through_asyncpg.ok and sync.ok
    assert snapshot(owner) == before  # nothing changed


def test_autocommit_connection_is_refused(database: tuple[Engine, Engine]) -> None:
    owner, app = database
    before = snapshot(owner)
    with app.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(MatrixError, match="transaction"):
            access_matrix(conn, tenants=[A, B])
    assert snapshot(owner) == before


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
        "postgresql+psycopg://u:s3cret@127.0.0.1:notaport/x",
        "not a url",
    ],
)
def test_bad_url_is_one_line_and_exit_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "matrix", "--url", url]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("tenancy: error:")
    assert "s3cret" not in err


@pytest.fixture(scope="module")
def no_registry() -> Iterator[tuple[Engine, Engine]]:
    """A scoped table under RLS and no tenant registry at all."""
    notes = Table(
        "notes",
        MetaData(),
        Column("tenant_id", String(36), primary_key=True),
        Column("id", String(36), primary_key=True),
    )

    def setup(conn: Connection, role: str) -> None:
        notes.create(conn)
        enable_rls(conn, [notes])
        grant_app_role(conn, role, [notes])

    with app_role_database(setup, prefix="tenancy_matrix") as pair:
        yield pair


def test_no_tenants_discoverable_and_none_given_is_a_clear_error(
    no_registry: tuple[Engine, Engine], capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = no_registry
    with app.connect() as conn, pytest.raises(MatrixError, match="--tenant"):
        access_matrix(conn)
    assert main(["db", "matrix", "--url", url_of(app)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "pass --tenant" in err
    with app.connect() as conn:
        matrix = access_matrix(conn, tenants=[A, B])
    assert matrix.tables == ("public.notes",)
    # No rows anywhere: every cell is vacuous, and says so.
    assert {c.outcome for c in matrix.cells} == {Outcome.VACUOUS}
    assert all(c.detail for c in matrix.cells)
