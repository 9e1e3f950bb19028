"""Requests served at once under one grant all reach its trail (found by the isolation
probe, whose concurrent reads collided on the trail's next ``seq``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant
from tests.unit.support.conftest import admin, engineer

USES = 80


def hammer(support: SupportAccess, tenant: Tenant) -> list[dict[str, object]]:
    """Approve a grant, then record USES uses from 8 threads at once; its trail."""
    from datetime import timedelta

    requested = support.request(
        tenant.id,
        engineer(),
        ticket_id="T-9",
        justification="j",
        scopes=["worklogs:read"],
        duration=timedelta(hours=1),
    )
    grant = support.approve(tenant.id, requested.id, admin(tenant))

    def use(n: int) -> None:
        support.record_use(grant, request_id=f"r{n}", route="/worklogs")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(use, range(USES)))  # re-raises the first failure
    return support.trail(tenant.id, grant.id)


def check(trail: list[dict[str, object]], notices: MemoryNotifier) -> None:
    assert [entry["seq"] for entry in trail] == list(range(1, len(trail) + 1))
    used = [entry["detail"] for entry in trail if entry["action"] == "used"]
    assert sorted(
        int(str(d["request_id"])[1:])
        for d in used  # type: ignore[index]
    ) == list(range(USES))
    assert [n.kind for n in notices.notices].count("first_use") == 1


def wal_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    return engine


def test_concurrent_uses_of_one_grant_all_reach_its_trail_on_sqlite(
    tmp_path: Path, acme: Tenant
) -> None:
    engine = wal_engine(tmp_path / "support.db")
    notices = MemoryNotifier()
    support = SupportAccess(engine, notifier=notices)
    support.create_schema()
    try:
        check(hammer(support, acme), notices)
    finally:
        engine.dispose()
