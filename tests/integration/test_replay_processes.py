"""The shared replay guards between real processes: a context token replayed to another
replica is refused.

Two replicas are two separate Python processes (this module run as a program), each with
its own ``ContextTokenVerifier`` for ``worklogs`` trusting the edge's keys, and its own
guard on one shared store: ``RedisReplayGuard`` on the local Redis, or
``TableReplayGuard`` on a scratch database of the local PostgreSQL, used by a fresh
application role (NOSUPERUSER) holding only ``REPLAY_PRIVILEGES`` on the table. The test
mints each token once, as the edge would, and hands it to the replicas. Without these
servers the tests skip, and under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Connection, create_engine

from tenancy.context import Assurance, Principal, TenantContext
from tenancy.errors import InvalidToken
from tenancy.identity import DEV_ISSUER, JWKSKeySource
from tenancy.propagation import (
    ContextTokenMinter,
    ContextTokenVerifier,
    RedisReplayGuard,
    ReplayGuard,
    ServiceKeyring,
    TableReplayGuard,
    trusted_service,
)
from tenancy.propagation.replay_table import REPLAY_PRIVILEGES, replay_table
from tenancy.scoping.rls import grant_statements
from tests.support.postgres import app_role_database
from tests.support.redis import REDIS_URL, redis_client

ROOT = Path(__file__).resolve().parents[2]
EDGE, WORKLOGS = "edge", "worklogs"
SCOPES = frozenset({"worklogs:read"})
ANSWER_TIMEOUT_S = 60.0


# -- a replica: this module run as a program (python -m tests.integration.test_replay_processes)


def serve(kind: str, target: str, prefix: str) -> None:
    """Read the edge's JWKS (one JSON line), then context tokens, one per line; answer each
    with ``accepted <tenant id>`` or ``refused <reason>``."""
    jwks = json.loads(sys.stdin.readline())
    guard: ReplayGuard
    if kind == "redis":
        guard = RedisReplayGuard(target, prefix=prefix)
    else:
        guard = TableReplayGuard(create_engine(target))
    keys = JWKSKeySource(lambda: jwks, algorithms=("EdDSA",), min_refresh_interval=0)
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        services=[trusted_service(EDGE, keys=keys, scopes=SCOPES)],
        replay=guard,
    )
    print("ready", os.getpid(), flush=True)
    for line in sys.stdin:
        try:
            verified = verifier.verify(line.strip())
        except InvalidToken as exc:
            print("refused", exc.reason, flush=True)
        else:
            print("accepted", verified.principal.tenant_id, flush=True)


TENANT_ID = str(uuid.uuid4())


class Replica:
    """One replica process, answering one token at a time."""

    def __init__(self, kind: str, target: str, prefix: str, jwks: dict[str, object]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.test_replay_processes", kind, target, prefix],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._send(json.dumps(jwks))
        ready = self._answer()
        assert ready.startswith("ready "), ready
        self.pid = int(ready.split()[1])

    def verify(self, token: str) -> str:
        """``accepted <tenant id>`` or ``refused <reason>``, from the replica."""
        self._send(token)
        return self._answer()

    def _send(self, line: str) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def _answer(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        if not select.select([stdout], [], [], ANSWER_TIMEOUT_S)[0]:
            raise TimeoutError(f"replica {self.process.pid} did not answer")
        line = stdout.readline()
        assert line, f"replica {self.process.pid} exited: {self.process.wait()}"
        return line.strip()

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("table", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(kind, the replicas' Redis URL or database URL, Redis key prefix)."""
    if request.param == "redis":
        client = redis_client()  # fails under CI=true when Redis is not there
        prefix = f"tenancy-test:{uuid.uuid4().hex[:12]}:jti"
        yield "redis", REDIS_URL, prefix
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
        return

    def setup(conn: Connection, role: str) -> None:
        replay_table.create(conn)
        for statement in grant_statements(
            role, [replay_table], conn.dialect, privileges=REPLAY_PRIVILEGES
        ):
            conn.exec_driver_sql(statement)

    # scratch_database underneath: fails under CI=true when PostgreSQL is not there.
    with app_role_database(setup) as (_, app):
        yield "table", app.url.render_as_string(hide_password=False), ""


@pytest.fixture
def edge_ring() -> ServiceKeyring:
    return ServiceKeyring.generate(EDGE)


@pytest.fixture
def edge(edge_ring: ServiceKeyring) -> ContextTokenMinter:
    return ContextTokenMinter(edge_ring)


@pytest.fixture
def replicas(
    store: tuple[str, str, str], edge_ring: ServiceKeyring
) -> Iterator[tuple[Replica, Replica]]:
    jwks = edge_ring.jwks()
    with ExitStack() as stack:
        pair = []
        for _ in range(2):
            replica = Replica(*store, jwks)
            stack.callback(replica.close)
            pair.append(replica)
        assert pair[0].pid != pair[1].pid != os.getpid()
        yield pair[0], pair[1]


def mint(edge: ContextTokenMinter) -> str:
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=TENANT_ID,
        subject="alice",
        roles=frozenset({"member"}),
        scopes=SCOPES,
        assurance=Assurance.MULTI_FACTOR,
    )
    ctx = TenantContext(TENANT_ID, "acme", "eu-central-1", principal, "rid-1")
    return edge.mint(ctx, audience=WORKLOGS, scopes=SCOPES)


def test_a_token_replayed_to_another_replica_is_refused(
    replicas: tuple[Replica, Replica], edge: ContextTokenMinter
) -> None:
    a, b = replicas
    token = mint(edge)
    assert a.verify(token) == f"accepted {TENANT_ID}"
    assert b.verify(token) == "refused context token replayed (or replay guard full)"
    assert a.verify(token).startswith("refused context token replayed")
    # Fresh tokens are accepted by either replica.
    assert b.verify(mint(edge)) == f"accepted {TENANT_ID}"
    assert a.verify(mint(edge)) == f"accepted {TENANT_ID}"


def test_one_token_sent_to_both_replicas_at_once_is_accepted_once(
    replicas: tuple[Replica, Replica], edge: ContextTokenMinter
) -> None:
    with ThreadPoolExecutor(2) as pool:
        for _ in range(20):
            token = mint(edge)
            answers = list(pool.map(Replica.verify, replicas, [token] * 2))
            assert sorted(a.split()[0] for a in answers) == ["accepted", "refused"], answers


if __name__ == "__main__":
    serve(*sys.argv[1:4])
