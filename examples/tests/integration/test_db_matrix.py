"""`tenancy db matrix` on the migrated worklogs schema: every cell holds, nothing changes.

The helpers here (``migrated_worklogs``, ``seed``) are shared with the examples' other
PostgreSQL tests and with ``examples/tests/isolation``, whose mutants break this same
schema on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from tenancy.testing.dbmatrix import Outcome, access_matrix
from tenancy_examples.worklogs.migrate import upgrade
from tests.integration.test_db_matrix import JSON_KEYS, cell, snapshot, tenancy, url_of
from tests.support.postgres import app_role_database
from tests.support.scoping_models import A, B

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
# Rows seeded per table and tenant (a table or tenant not named here holds none).
SEEDED = {
    "public.worklogs": {A: 3, B: 2},
    "public.tenancy_contribution_settings": {A: 1, B: 1},
    "public.tenancy_audit_events": {A: 2},
}


@contextmanager
def migrated_worklogs() -> Iterator[tuple[Engine, Engine]]:
    """(owner, app role) engines on a scratch database built by the worklogs migrations."""

    def nothing(conn: Connection, role: str) -> None:
        """The migrations run after the role exists (committed), in their own connection."""

    with app_role_database(nothing, prefix="tenancy_matrix") as (owner, app):
        upgrade(url_of(owner), app_role=str(app.url.username))
        yield owner, app


def seed(owner: Engine) -> None:
    """As the owner (a superuser: RLS does not apply), the rows of ``SEEDED``."""
    with owner.begin() as conn:
        for n, tenant in enumerate((A, B)):
            conn.execute(
                text(
                    "INSERT INTO tenancy_tenants VALUES (:id, :slug, :slug, 'eu-central-1', "
                    "'active', :now, :now)"
                ),
                {"id": tenant, "slug": f"tenant-{n}", "now": NOW},
            )
            conn.execute(
                text("INSERT INTO tenancy_contribution_settings VALUES (:t, true, :now, 'seed')"),
                {"t": tenant, "now": NOW},
            )
            for i in range(SEEDED["public.worklogs"][tenant]):
                conn.execute(
                    text(
                        "INSERT INTO worklogs (tenant_id, id, author, description, minutes, day, "
                        "created_at, comment) VALUES (:t, :id, 'ann', 'work', 30, :day, :now, "
                        ":comment)"
                    ),
                    {
                        "t": tenant,
                        "id": f"w{i}",
                        "day": date(2026, 11, 1),
                        "now": NOW,
                        "comment": b"\x00sealed" if i else None,
                    },
                )
        for seq in range(2):
            conn.execute(
                text(
                    "INSERT INTO tenancy_audit_events VALUES (:t, :seq, 1, '2026-11-02', 'x', "
                    "'ann', NULL, NULL, '{}', 'p', 'h')"
                ),
                {"t": A, "seq": seq},
            )


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, Engine]]:
    with migrated_worklogs() as (owner, app):
        seed(owner)
        yield owner, app


def test_healthy_schema_holds_in_every_cell_and_nothing_changes(
    database: tuple[Engine, Engine],
) -> None:
    owner, app = database
    before = snapshot(owner)
    assert sum(map(len, before.values())) == 11  # the seed really is there
    with app.connect() as conn:
        matrix = access_matrix(conn)  # tenants come from the registry
        assert not conn.in_transaction()
    assert snapshot(owner) == before

    assert matrix.findings == ()
    assert matrix.summary["leaked"] == matrix.summary["error"] == 0, [
        c for c in matrix.cells if c.outcome in (Outcome.LEAKED, Outcome.ERROR)
    ]
    assert matrix.ok
    assert matrix.tenants == (A, B)
    assert matrix.role == str(app.url.username)
    assert set(SEEDED) <= set(matrix.tables)
    keys = [(c.table, c.operation, c.setting, c.target) for c in matrix.cells]
    assert len(keys) == len(set(keys))
    # 4 cells with the setting '' and 4 with it never set; per tenant 1 own SELECT and 4
    # against the other one.
    assert len(matrix.cells) == len(matrix.tables) * (2 * 4 + 2 * (1 + 4))
    for table, counts in SEEDED.items():
        for tenant in (A, B):
            assert cell(matrix, table, "SELECT", tenant, "own").rows == counts.get(tenant, 0)


def test_cells_against_a_tenant_with_rows_are_enforced(database: tuple[Engine, Engine]) -> None:
    _, app = database
    with app.connect() as conn:
        matrix = access_matrix(conn, tenants=[A, B])
    worklogs = "public.worklogs"
    for me, you in ((A, B), (B, A)):
        for operation in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            found = cell(matrix, worklogs, operation, me, you)
            assert found.outcome is Outcome.ENFORCED, found
        assert cell(matrix, worklogs, "SELECT", me, "own").outcome is Outcome.ENFORCED
        assert "row-level security" in cell(matrix, worklogs, "INSERT", me, you).detail
    for operation in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        for no_tenant in ("none", "unset"):
            found = cell(matrix, worklogs, operation, no_tenant, "none")
            assert found.outcome is Outcome.ENFORCED, found
            assert "new session" not in found.detail  # it really started with NULL
    assert "never set" in cell(matrix, worklogs, "SELECT", "unset", "none").detail
    # The app role holds only SELECT and INSERT on the audit trail: GRANTs refuse the rest.
    events = "public.tenancy_audit_events"
    assert cell(matrix, events, "INSERT", A, B).outcome is Outcome.ENFORCED
    assert cell(matrix, events, "UPDATE", A, B).outcome is Outcome.DENIED
    assert cell(matrix, events, "DELETE", B, A).outcome is Outcome.DENIED
    # B holds no audit row: nothing of B's to hide from A, and nothing of B's to copy.
    assert cell(matrix, events, "SELECT", A, B).outcome is Outcome.VACUOUS
    assert cell(matrix, events, "INSERT", B, A).outcome is Outcome.VACUOUS
    assert cell(matrix, events, "SELECT", B, A).outcome is Outcome.ENFORCED


def test_cli_end_to_end_finds_the_tenants_in_the_registry(
    database: tuple[Engine, Engine], tmp_path: Path
) -> None:
    _, app = database
    out = tmp_path / "matrix.json"
    result = tenancy("db", "matrix", "--url", url_of(app), "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"tenants: T1 = {A}, T2 = {B}" in result.stdout
    assert "public.worklogs" in result.stdout
    assert result.stdout.rstrip().endswith("OK: RLS held in every cell")
    document = json.loads(out.read_text())
    assert set(document) == JSON_KEYS
    assert document["tenants"] == [A, B]
    assert document["summary"]["leaked"] == 0 and document["summary"]["enforced"] > 0
