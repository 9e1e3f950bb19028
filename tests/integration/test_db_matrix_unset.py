"""`tenancy db matrix`: the ``unset`` cells, run on a brand-new session where the tenant
setting was never set (NULL), catch what the ``none`` cells (setting ``''``) cannot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tenancy.cli import main
from tenancy.testing.dbmatrix import DatabaseMatrix, Outcome, access_matrix
from tests.integration.test_db_audit_roles import Scene, new_session, scene, seen_as
from tests.integration.test_db_matrix import cell
from tests.support.scoping_models import A, B

pytestmark = pytest.mark.postgres
PROJECTS = "public.projects"
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")
SETTING = "current_setting('tenancy.tenant_id', true)"


@pytest.fixture
def db() -> Iterator[Scene]:
    with scene() as found:
        yield found


def matrix_of(db: Scene) -> DatabaseMatrix:
    with db.app.connect() as conn:
        return access_matrix(conn, tenants=[A, B])


def with_policy(db: Scene, predicate: str) -> None:
    db.ddl(
        f"ALTER POLICY tenancy_tenant_isolation ON projects USING ({predicate}) "
        f"WITH CHECK ({predicate})"
    )


def outcomes(matrix: DatabaseMatrix, setting: str) -> set[Outcome]:
    return {cell(matrix, PROJECTS, op, setting, "none").outcome for op in OPERATIONS}


def test_policy_admitting_a_null_setting_leaks_only_in_the_unset_cells(
    db: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = matrix_of(db)
    assert healthy.ok and outcomes(healthy, "unset") == {Outcome.ENFORCED}
    with_policy(db, f"tenant_id = NULLIF({SETTING}, '') OR {SETTING} IS NULL")
    # The leak is real, and only with the setting never set: '' still sees nothing.
    assert new_session(db.app) == (None, {A, B})
    assert seen_as(db.app, "") == set()
    matrix = matrix_of(db)
    assert outcomes(matrix, "unset") == {Outcome.LEAKED}
    assert outcomes(matrix, "none") == {Outcome.ENFORCED}
    assert cell(matrix, PROJECTS, "SELECT", "unset", "none").rows == 2
    for me, you in ((A, B), (B, A)):
        assert {cell(matrix, PROJECTS, op, me, you).outcome for op in OPERATIONS} == {
            Outcome.ENFORCED
        }
    assert {(f.check, f.subject) for f in matrix.findings} == {
        ("rls-policy-null-setting", PROJECTS)
    }
    assert DatabaseMatrix.from_json(matrix.to_json()) == matrix
    url = db.app.url.render_as_string(hide_password=False)
    assert main(["db", "matrix", "--url", url, "--tenant", A, "--tenant", B]) == 1
    out = capsys.readouterr().out
    assert "no tenant: setting none = ''" in out
    unset_lines = [
        line.split()
        for line in out.splitlines()
        if line.startswith(PROJECTS) and line.split()[2] == "unset"
    ]
    assert [line[4] for line in unset_lines] == ["leaked"] * 4
    assert "FAIL rls-policy-null-setting: public.projects" in out


SHAPES = [  # (predicate, the auditor flags it, the unset cells leak)
    (f"CASE WHEN {SETTING} IS NULL THEN true ELSE tenant_id = {SETTING} END", True, True),
    (f"tenant_id = coalesce({SETTING}, tenant_id)", True, True),
    (f"(tenant_id = {SETTING}) IS NOT FALSE", True, True),
    # NULL never equals a NOT NULL tenant_id: flagged, conservatively, though it holds.
    (f"tenant_id IS NOT DISTINCT FROM {SETTING}", True, False),
    (f"tenant_id = coalesce({SETTING}, '')", False, False),
    (f"tenant_id = NULLIF({SETTING}, '') OR tenant_id IS NULL", False, False),
]


@pytest.mark.parametrize(("predicate", "flagged", "leaks"), SHAPES, ids=[s[0][:40] for s in SHAPES])
def test_null_setting_heuristic_against_the_matrix(
    db: Scene, predicate: str, flagged: bool, leaks: bool
) -> None:
    with_policy(db, predicate)
    matrix = matrix_of(db)
    assert new_session(db.app)[1] == ({A, B} if leaks else set())
    unset = cell(matrix, PROJECTS, "SELECT", "unset", "none")
    assert unset.outcome is (Outcome.LEAKED if leaks else Outcome.ENFORCED), unset
    assert outcomes(matrix, "none") == {Outcome.ENFORCED}
    assert (
        ("rls-policy-null-setting", PROJECTS) in {(f.check, f.subject) for f in matrix.findings}
    ) is flagged


def test_a_default_tenant_shows_in_the_unset_cells(db: Scene) -> None:
    db.ddl(f"ALTER ROLE {{role}} SET tenancy.tenant_id = '{A}'")
    matrix = matrix_of(db)
    unset = cell(matrix, PROJECTS, "SELECT", "unset", "none")
    assert (unset.outcome, unset.rows) == (Outcome.LEAKED, 1)
    assert f"starts with the setting {A!r}" in unset.detail
    assert outcomes(matrix, "none") == {Outcome.ENFORCED}
    assert "tenant-setting-default" in {f.check for f in matrix.findings}


def test_an_empty_default_makes_the_unset_cells_vacuous(db: Scene) -> None:
    db.ddl("ALTER ROLE {role} SET tenancy.tenant_id = ''")
    matrix = matrix_of(db)
    assert outcomes(matrix, "unset") == {Outcome.VACUOUS}
    assert (
        "never-set case was not reached" in cell(matrix, PROJECTS, "SELECT", "unset", "none").detail
    )
    assert outcomes(matrix, "none") == {Outcome.ENFORCED}


def test_unset_cells_run_as_the_role_the_matrix_runs_as(db: Scene) -> None:
    # The owner logs in as a superuser and switches to the app role: the new session
    # must switch too, or it would read every row as the superuser.
    with db.owner.connect() as conn:
        conn.execute(text(f'SET ROLE "{db.role}"'))
        matrix = access_matrix(conn, tenants=[A, B])
        conn.rollback()
    assert matrix.role == db.role
    assert outcomes(matrix, "unset") == {Outcome.ENFORCED}
    assert matrix.ok


def test_unset_cells_are_errors_when_no_new_session_opens(db: Scene) -> None:
    db.ddl("ALTER ROLE {role} CONNECTION LIMIT 1")
    matrix = matrix_of(db)
    unset = cell(matrix, PROJECTS, "SELECT", "unset", "none")
    assert outcomes(matrix, "unset") == {Outcome.ERROR}
    assert "no new session" in unset.detail and "too many connections" in unset.detail
    assert outcomes(matrix, "none") == {Outcome.ENFORCED}
    assert not matrix.ok
