"""The shipped roles and migrations produce a database the auditor passes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from tenancy.context import bind
from tenancy.scoping import TenantSession
from tenancy.scoping.audit import audit_engine
from tenancy.scoping.audit.citus import citus_findings
from tenancy.support import SupportAccess
from tenancy_examples.worklogs.store import WorklogStore
from tests.support.postgres import LOCAL_ADMIN_URL, scratch_database
from tests.support.scoping_models import A, B, ctx

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[3]
SQL = ROOT / "infra" / "sql"


def tenancy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenancy.cli", *args], capture_output=True, text=True, check=False
    )


def test_shipped_sql_matches_the_migrations() -> None:
    generated = tenancy(
        "db",
        "migrate",
        "--url",
        "postgresql+psycopg://tenancy_owner@127.0.0.1/tenancy",
        "--app-role",
        "tenancy_app",
        "--sql",
    )
    assert generated.returncode == 0, generated.stderr
    shipped = (SQL / "worklogs.sql").read_text().split("\n", 2)[2]  # minus the header
    assert shipped.strip() == generated.stdout.strip()


@pytest.fixture
def migrated() -> Iterator[tuple[str, str]]:
    """(owner URL, app URL) of a scratch database built from infra/sql and the migrations."""
    admin = create_engine(LOCAL_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        existed = set(
            conn.execute(
                text(
                    "SELECT rolname FROM pg_roles WHERE rolname IN ('tenancy_owner', 'tenancy_app')"
                )
            ).scalars()
        )
        conn.execute(text((SQL / "roles.sql").read_text()))
    try:
        with scratch_database(LOCAL_ADMIN_URL) as url:
            db_admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with db_admin.connect() as conn:
                conn.execute(text("GRANT CREATE, USAGE ON SCHEMA public TO tenancy_owner"))
                conn.execute(text("GRANT USAGE ON SCHEMA public TO tenancy_app"))
            db_admin.dispose()
            owner_url = url.replace("postgres@", "tenancy_owner@", 1)
            app_url = url.replace("postgres@", "tenancy_app@", 1)
            result = tenancy("db", "migrate", "--url", owner_url, "--app-role", "tenancy_app")
            assert result.returncode == 0, result.stderr
            yield owner_url, app_url
    finally:
        with admin.connect() as conn:
            for role in ("tenancy_app", "tenancy_owner"):
                if role not in existed:
                    conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_migrated_database_passes_the_audit_and_isolates_worklogs(
    migrated: tuple[str, str],
) -> None:
    owner_url, app_url = migrated
    app = create_engine(app_url)
    try:
        assert audit_engine(app) == []
        assert tenancy("db", "audit", "--url", app_url).returncode == 0
        with app.connect() as conn:
            assert citus_findings(conn) == []  # every key leads with tenant_id
        store = WorklogStore(app)
        with bind(ctx(A)):
            mine = store.create(description="a", minutes=5, day=date(2026, 11, 1))
        with bind(ctx(B)):
            store.create(description="b", minutes=5, day=date(2026, 11, 1))
            sessions = sessionmaker(app, class_=TenantSession)
            with sessions() as s:
                rows = s.execute(text("SELECT id FROM worklogs")).scalars().all()
            assert mine["id"] not in rows and len(rows) == 1
        owner = create_engine(owner_url)
        with owner.connect() as conn:  # FORCE: even the owner sees nothing without a tenant
            assert conn.execute(text("SELECT count(*) FROM worklogs")).scalar() == 0
        owner.dispose()
    finally:
        app.dispose()


def test_tenant_keys_work_as_the_app_role_under_rls(
    migrated: tuple[str, str], tmp_path: Path
) -> None:
    from tenancy.keys import Binding, LocalKeyProvider, RootKey, TenantKeys

    _, app_url = migrated
    app = create_engine(app_url)
    try:
        provider = LocalKeyProvider(
            tmp_path / "keks.json", root=RootKey.load_or_create(tmp_path / "root.key")
        )
        keys = TenantKeys(app, [provider])
        keys.provision(A)
        keys.provision(B)
        store = WorklogStore(app, keys=keys)
        with bind(ctx(A)):
            mine = store.create(
                description="a", minutes=5, day=date(2026, 11, 1), comment="plaintext-marker"
            )
            assert store.get(mine["id"])["comment"] == "plaintext-marker"
        sealed = keys.encrypt(b"x", Binding(B, "t", "c", "r"), purpose="p")
        assert keys.decrypt(sealed, Binding(B, "t", "c", "r"), purpose="p") == b"x"
        with app.begin() as conn:  # RLS: tenant A's setting sees only A's key rows
            conn.execute(text("SELECT set_config('tenancy.tenant_id', :t, true)"), {"t": A})
            tenants = set(
                conn.execute(
                    text(
                        "SELECT tenant_id FROM tenancy_data_keys UNION "
                        "SELECT tenant_id FROM tenancy_tenant_keks"
                    )
                ).scalars()
            )
            raw = conn.execute(text("SELECT comment FROM worklogs")).scalar_one()
        assert tenants == {A}
        assert b"plaintext-marker" not in bytes(raw)
        assert audit_engine(app) == []
    finally:
        app.dispose()


def test_support_grants_work_as_the_app_role_under_rls(migrated: tuple[str, str]) -> None:
    from datetime import timedelta

    from tenancy.context import Assurance, Principal, PrincipalKind

    _, app_url = migrated
    app = create_engine(app_url)
    try:
        support = SupportAccess(app)
        staff = Principal(
            "https://idp", "00000000-0000-4000-8000-000000000001", "sam", kind=PrincipalKind.SUPPORT
        )
        admin = Principal(
            "https://idp", A, "ann", roles=frozenset({"admin"}), assurance=Assurance.MULTI_FACTOR
        )
        grant = support.request(
            A,
            staff,
            ticket_id="T-1",
            justification="j",
            scopes=["worklogs:read"],
            duration=timedelta(hours=1),
        )
        support.approve(A, grant.id, admin)
        support.request(
            B,
            staff,
            ticket_id="T-2",
            justification="j",
            scopes=["worklogs:read"],
            duration=timedelta(hours=1),
        )
        assert support.active_grant(A, staff) is not None
        assert [g.ticket_id for g in support.grants(A)] == ["T-1"]  # B's request is not seen
        assert len(support.close_ticket("T-1", tenant_id=A)) == 1
        assert audit_engine(app) == []
    finally:
        app.dispose()
