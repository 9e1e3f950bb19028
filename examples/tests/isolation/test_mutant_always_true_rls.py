"""The database access matrix catches broken RLS, and changes nothing even then."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from examples.tests.integration.test_db_matrix import migrated_worklogs, seed
from tenancy.testing.dbmatrix import DatabaseMatrix, Outcome, access_matrix
from tests.integration.test_db_matrix import cell, snapshot, tenancy, url_of
from tests.isolation.mutants.always_true_rls import always_true_rls, unforced_app_owned
from tests.support.scoping_models import A, B

pytestmark = pytest.mark.postgres
WORKLOGS = "public.worklogs"
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, Engine]]:
    with migrated_worklogs() as (owner, app):
        seed(owner)
        yield owner, app


def matrix_of(owner: Engine, app: Engine) -> DatabaseMatrix:
    """The matrix as the app role, asserting the owner's view is the same before and after."""
    before = snapshot(owner)
    with app.connect() as conn:
        matrix = access_matrix(conn)
    assert snapshot(owner) == before
    return matrix


def assert_worklogs_leak(matrix: DatabaseMatrix) -> None:
    for me, you in ((A, B), (B, A)):
        for operation in OPERATIONS:
            found = cell(matrix, WORKLOGS, operation, me, you)
            assert found.outcome is Outcome.LEAKED, found
        assert cell(matrix, WORKLOGS, "SELECT", me, "own").outcome is Outcome.LEAKED
    assert cell(matrix, WORKLOGS, "SELECT", A, B).rows == 2
    assert cell(matrix, WORKLOGS, "DELETE", B, A).rows == 3
    for operation in OPERATIONS:
        assert cell(matrix, WORKLOGS, operation, "none", "none").outcome is Outcome.LEAKED
    # The mutant broke one table: the others still hold, cell by cell.
    others = [c for c in matrix.cells if c.table != WORKLOGS]
    assert others and all(c.outcome is not Outcome.LEAKED for c in others)
    assert not matrix.ok


def test_always_true_policy_leaks_in_every_worklogs_cell(
    database: tuple[Engine, Engine], tmp_path: Path
) -> None:
    owner, app = database
    with always_true_rls(owner):
        matrix = matrix_of(owner, app)
        before = snapshot(owner)
        result = tenancy("db", "matrix", "--url", url_of(app), "--json", str(tmp_path / "m.json"))
        assert snapshot(owner) == before
    assert_worklogs_leak(matrix)
    # With no tenant set, the as-is copy of a row hits its own primary key: the policy
    # admitted it, only the unique index stopped it.
    assert "only a constraint" in cell(matrix, WORKLOGS, "INSERT", "none", "none").detail
    assert ("rls-policy-always-true", WORKLOGS) in {(f.check, f.subject) for f in matrix.findings}
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT guaranteed" in result.stdout
    assert json.loads((tmp_path / "m.json").read_text())["summary"]["leaked"] > 0
    # Restored: the same database is sound again.
    assert matrix_of(owner, app).ok


def test_unforced_rls_on_a_table_the_app_role_owns_leaks(database: tuple[Engine, Engine]) -> None:
    owner, app = database
    with unforced_app_owned(owner, str(app.url.username)):
        matrix = matrix_of(owner, app)
    assert_worklogs_leak(matrix)
    assert {("rls-forced", WORKLOGS), ("app-role-owns-table", WORKLOGS)} <= {
        (f.check, f.subject) for f in matrix.findings
    }
    assert matrix_of(owner, app).ok
