"""The demo on PostgreSQL as an operator runs it: through a transaction-pooling PgBouncer,
and with the application role's backends terminated under load. Real processes: the
demo (edge, worklogs, console), PgBouncer, PostgreSQL, and this test as the clients.

What must hold in both: no answer is a plain-text error or a 502; no tenant sees another's
rows; every acknowledged write is stored under its tenant; the services recover by
themselves; audit chains still verify.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from examples.tests.e2e.test_demo import free_port, stop, wait_ready
from examples.tests.integration.test_db_matrix import migrated_worklogs
from tests.integration.test_db_matrix import url_of
from tests.support.pgbouncer import running_pgbouncer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
ENTRY = {"description": "load", "minutes": 15, "day": "2026-11-21"}


@dataclass
class Running:
    edge: str
    env: dict[str, str]
    owner: Engine
    role: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # slug -> tenant id

    def tenancy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tenancy.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@contextmanager
def demo_on_postgres(tmp_path: Path, *, through_pgbouncer: bool) -> Iterator[Running]:
    with ExitStack() as stack:
        owner, app = stack.enter_context(migrated_worklogs())
        role = str(app.url.username)
        url = url_of(app)
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TENANCY_DATA_DIR": str(tmp_path / "demo"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        if through_pgbouncer:
            port = stack.enter_context(
                running_pgbouncer(str(app.url.database), [role], pool_size=4)
            )
            url = app.url.set(port=port).render_as_string(hide_password=False)
            env["TENANCY_DATABASE_POOLER"] = "transaction"
        env["TENANCY_DATABASE_URL"] = url
        edge_port = free_port()
        # The services' output goes to a file: a pipe nobody reads fills up under load and
        # stalls every process writing a log line.
        output = stack.enter_context(open(tmp_path / "demo.log", "wb"))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenancy.cli",
                "demo",
                "--port",
                str(edge_port),
                "--backend-port",
                str(free_port()),
                "--console-port",
                str(free_port()),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, proc)
        running = Running(f"http://127.0.0.1:{edge_port}", env, owner, role)
        wait_ready(proc, running.edge, time.monotonic())
        for slug in ("acme", "globex"):
            minted = running.tenancy("dev-token", "--tenant", slug, "--sub", f"{slug}-user")
            assert minted.returncode == 0, minted.stderr
            running.tokens[slug] = minted.stdout.strip()
        listing = running.tenancy("tenants", "list").stdout
        running.ids = {line.split("\t")[0]: line.split("\t")[1] for line in listing.splitlines()}
        yield running


@dataclass
class Outcome:
    slug: str
    method: str
    status: int
    content_type: str
    body: Any
    seconds: float = 0.0


async def mixed_load(running: Running, requests: int, concurrency: int = 40) -> list[Outcome]:
    """``requests`` requests, alternating tenants and GET /worklogs with POST /worklogs."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=running.edge, timeout=30) as client:

        async def one(n: int) -> Outcome:
            slug = ("acme", "globex")[n % 2]
            method = ("GET", "POST")[(n // 2) % 2]
            headers = {"Authorization": f"Bearer {running.tokens[slug]}"}
            async with limit:
                started = time.monotonic()
                try:
                    if method == "GET":
                        answer = await client.get("/worklogs", headers=headers)
                    else:
                        answer = await client.post("/worklogs", json=ENTRY, headers=headers)
                except httpx.TransportError as exc:
                    return Outcome(slug, method, 0, "", repr(exc))
            kind = answer.headers.get("content-type", "")
            body = answer.json() if "json" in kind else answer.text
            return Outcome(slug, method, answer.status_code, kind, body, time.monotonic() - started)

        return list(await asyncio.gather(*(one(n) for n in range(requests))))


def assert_isolated_and_kept(running: Running, outcomes: list[Outcome]) -> None:
    """No list shows another tenant's row; every acknowledged write is stored, under its
    tenant (read as the owner, a superuser)."""
    for o in outcomes:
        if o.method == "GET" and o.status == 200:
            assert {w["tenant_id"] for w in o.body["items"]} <= {running.ids[o.slug]}
    acknowledged = {o.body["id"]: running.ids[o.slug] for o in outcomes if o.status == 201}
    with running.owner.connect() as conn:
        stored = dict(conn.execute(text("SELECT id, tenant_id FROM worklogs")).all())
    assert {i: stored.get(i) for i in acknowledged} == acknowledged


def test_the_demo_through_pgbouncer_answers_every_request(tmp_path: Path) -> None:
    with demo_on_postgres(tmp_path, through_pgbouncer=True) as running:
        outcomes = asyncio.run(mixed_load(running, 2000))
        failed = [(o.method, o.status, round(o.seconds, 2)) for o in outcomes if o.status >= 300]
        assert failed == []  # 0 errors (it answered a few 500s before: prepared statements)
        assert_isolated_and_kept(running, outcomes)
        # A plain connection through the pooler afterwards carries no tenant setting.
        plain = create_engine(
            running.env["TENANCY_DATABASE_URL"], connect_args={"prepare_threshold": None}
        )
        try:
            for _ in range(4):
                with plain.connect() as conn:
                    setting = conn.execute(
                        text("SELECT current_setting('tenancy.tenant_id', true)")
                    ).scalar()
                    assert setting in (None, "")
                    assert conn.execute(text("SELECT count(*) FROM worklogs")).scalar() == 0
        finally:
            plain.dispose()


def test_terminated_backends_under_load_are_503_problems_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    with demo_on_postgres(tmp_path, through_pgbouncer=False) as running:
        stop_killing = threading.Event()
        killed = [0]

        def killer() -> None:
            admin = create_engine(url_of(running.owner), isolation_level="AUTOCOMMIT")
            try:
                while not stop_killing.wait(0.25):
                    with admin.connect() as conn:
                        killed[0] += len(
                            conn.execute(
                                text(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE usename = :role"
                                ),
                                {"role": running.role},
                            ).all()
                        )
            finally:
                admin.dispose()

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            outcomes = asyncio.run(mixed_load(running, 1500))
        finally:
            stop_killing.set()
            thread.join()
        assert killed[0] > 0  # the fault was really injected
        statuses = {o.status for o in outcomes}
        assert statuses <= {200, 201, 503}, sorted(statuses)  # no 500, no 502, no drop
        for o in outcomes:
            if o.status == 503:
                assert o.content_type.startswith("application/problem+json"), o.body
                assert o.body["code"] == "database-unavailable"
        assert_isolated_and_kept(running, outcomes)
        # Recovery without a restart: every request answers again.
        after = asyncio.run(mixed_load(running, 40, concurrency=4))
        assert {o.status for o in after} <= {200, 201}
        for slug in ("acme", "globex"):
            verified = running.tenancy("audit", "verify", "--tenant", slug)
            assert verified.returncode == 0, verified.stdout + verified.stderr
        print(
            f"\nbackends terminated: {killed[0]}; answers: "
            + ", ".join(f"{s}: {sum(o.status == s for o in outcomes)}" for s in sorted(statuses))
        )
