"""The shared replay guards: ``RedisReplayGuard`` on the local Redis, ``TableReplayGuard`` on
SQLite and on the local PostgreSQL.

Each guard records an id once, refuses it until its token expires and takes it again
after; 50 threads racing one id get exactly one acceptance; and a store that cannot
record (unreachable, hung, a failed commit, no table) refuses the token and records
nothing. The Redis and PostgreSQL cases need those servers (skipped without them, failed
under ``CI=true``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import OperationalError

from tenancy.clock import FrozenClock
from tenancy.context import TenantContext
from tenancy.errors import ConfigurationError, InvalidToken
from tenancy.events import MemorySink
from tenancy.propagation import (
    ContextTokenMinter,
    ContextTokenVerifier,
    RedisReplayGuard,
    ReplayGuard,
    ServiceKeyring,
    TableReplayGuard,
    trusted_service,
)
from tenancy.propagation.replay_table import replay_table
from tests.support.postgres import LOCAL_ADMIN_URL, scratch_database
from tests.support.redis import REDIS_URL, Partition, redis_client
from tests.unit.propagation.conftest import DELEGABLE, EDGE, WORKLOGS, keys_of

RACERS = 50
# A TCP port nothing listens on (connections are refused at once).
CLOSED_PORT = 9


def new_jti() -> str:
    return uuid.uuid4().hex


# -- the stores -------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[tuple[redis.Redis, str]]:
    """The local Redis and a prefix of this test's own; its keys are deleted after."""
    client = redis_client()
    prefix = f"tenancy-test:{uuid.uuid4().hex[:12]}:jti"
    yield client, prefix
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def sqlite_engine(directory: Path) -> Engine:
    return create_engine(f"sqlite:///{directory / 'replay.db'}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_database(LOCAL_ADMIN_URL) as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """(a guard, a function counting the ids it holds) for each store."""
    if request.param == "redis":
        client, prefix = request.getfixturevalue("redis_server")
        with RedisReplayGuard(REDIS_URL, prefix=prefix) as guard:
            yield guard, lambda: len(list(client.scan_iter(f"{prefix}:*")))
        return
    url = (
        request.getfixturevalue("postgres_url")
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'replay.db'}"
    )
    engine = create_engine(url, pool_size=10, max_overflow=RACERS)
    table_guard = TableReplayGuard(engine)
    table_guard.create_schema()
    yield table_guard, lambda: rows(engine)
    engine.dispose()


def rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(replay_table)).scalar_one())


def held(engine: Engine, jti: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(select(replay_table.c.jti).where(replay_table.c.jti == jti))
        return found.first() is not None


# -- what every guard does --------------------------------------------------------------


def test_first_use_is_accepted_and_a_second_refused(store: tuple[ReplayGuard, Any]) -> None:
    guard, count = store
    jti, now = new_jti(), time.time()
    assert guard.first_use(jti, expires_at=now + 60, now=now)
    assert not guard.first_use(jti, expires_at=now + 60, now=now + 1)
    assert not guard.first_use(jti, expires_at=now + 120, now=now + 59)  # no extension
    assert guard.first_use(new_jti(), expires_at=now + 60, now=now)  # another id: its own
    assert count() == 2


def test_an_expired_id_may_be_recorded_again(store: tuple[ReplayGuard, Any]) -> None:
    # Real time, because Redis expires keys on its own clock (in whole seconds: EXAT).
    guard, count = store
    jti, start = new_jti(), time.time()
    expires_at = start + 0.2
    assert guard.first_use(jti, expires_at=expires_at, now=start)
    assert not guard.first_use(jti, expires_at=expires_at, now=time.time())
    while time.time() <= math.ceil(expires_at) + 0.05:
        time.sleep(0.05)
    now = time.time()
    assert guard.first_use(jti, expires_at=now + 60, now=now)
    assert not guard.first_use(jti, expires_at=now + 60, now=now)  # and held again
    assert count() == 1


def test_racing_threads_record_an_id_exactly_once(store: tuple[ReplayGuard, Any]) -> None:
    guard, count = store
    jti, now = new_jti(), time.time()
    start = threading.Barrier(RACERS)
    results: list[bool] = []

    def race() -> None:
        start.wait()
        results.append(guard.first_use(jti, expires_at=now + 60, now=now))

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == RACERS
    assert results.count(True) == 1
    assert count() == 1


def test_a_verifier_on_the_guard_refuses_a_replay_to_another_verifier(
    store: tuple[ReplayGuard, Any],
    minter: ContextTokenMinter,
    edge_ring: ServiceKeyring,
    clock: FrozenClock,
    acme_ctx: TenantContext,
) -> None:
    guard, _ = store
    replica_a, replica_b = (
        ContextTokenVerifier(
            audience=WORKLOGS,
            services=[trusted_service(EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE)],
            clock=clock,
            replay=guard,
        )
        for _ in range(2)
    )
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=["worklogs:read"])
    assert replica_a.verify(token).principal.tenant_id == acme_ctx.tenant_id
    with pytest.raises(InvalidToken, match="replayed"):
        replica_b.verify(token)
    for replica in (replica_b, replica_a):  # a fresh token is accepted by either
        fresh = minter.mint(acme_ctx, audience=WORKLOGS, scopes=["worklogs:read"])
        assert replica.verify(fresh).jti != token


# -- Redis failing closed ---------------------------------------------------------------


@pytest.mark.redis
def test_unreachable_redis_refuses_and_says_why(
    redis_server: tuple[redis.Redis, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, prefix = redis_server
    sink, jti, now = MemorySink(), new_jti(), time.time()
    url = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    with (
        caplog.at_level(logging.WARNING, "tenancy.propagation"),
        RedisReplayGuard(url, prefix=prefix, events=sink) as guard,
    ):
        assert not guard.first_use(jti, expires_at=now + 60, now=now)
    assert sink.actions() == ["replay_guard.unavailable"]
    assert sink.events[0].reason == "ConnectionError"
    assert sink.events[0].details == {"store": "redis"}
    assert "Redis did not record a token id (ConnectionError): refused" in caplog.text
    assert client.exists(f"{prefix}:{jti}") == 0


@pytest.mark.redis
def test_a_hung_redis_refuses_within_its_timeout_and_records_nothing(
    redis_server: tuple[redis.Redis, str],
) -> None:
    client, prefix = redis_server
    partition = Partition()
    try:
        with RedisReplayGuard(partition.url, prefix=prefix, timeout=0.3) as guard:
            now = time.time()
            assert guard.first_use(new_jti(), expires_at=now + 60, now=now)  # connected
            partition.cut()
            time.sleep(0.2)  # each pump sees the cut at its next turn (every 50 ms)
            jti = new_jti()
            started = time.monotonic()
            assert not guard.first_use(jti, expires_at=now + 60, now=now)
            assert time.monotonic() - started < 2.0  # two timeouts (one retry), not forever
    finally:
        partition.close()
    assert client.exists(f"{prefix}:{jti}") == 0


@pytest.mark.redis
def test_a_given_client_is_used_and_left_open(redis_server: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_server
    jti, now = new_jti(), time.time()
    with RedisReplayGuard(client, prefix=prefix) as guard:
        assert guard.first_use(jti, expires_at=now + 60, now=now)
    assert client.ttl(f"{prefix}:{jti}") in range(59, 62)  # EXAT: ceil(expires_at)
    assert client.ping()  # not closed by the guard


def test_redis_guard_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisReplayGuard(REDIS_URL, prefix="a b")
    with pytest.raises(ConfigurationError, match="timeout"):
        RedisReplayGuard(REDIS_URL, timeout=0)
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        RedisReplayGuard("http://127.0.0.1:6379")
    guard = RedisReplayGuard("redis://:secret@127.0.0.1:6379/0")
    assert "secret" not in repr(guard)
    guard.close()


# -- the table failing closed, and pruning ------------------------------------------------


def test_a_failed_commit_refuses_and_records_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sqlite_engine(tmp_path)
    TableReplayGuard(engine).create_schema()
    sink, jti, now = MemorySink(), new_jti(), time.time()

    def fail(conn: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(engine, "commit", fail)
    with caplog.at_level(logging.WARNING, "tenancy.propagation"):
        assert not TableReplayGuard(engine, events=sink).first_use(
            jti, expires_at=now + 60, now=now
        )
    event.remove(engine, "commit", fail)
    assert sink.actions() == ["replay_guard.unavailable"]
    assert sink.events[0].details == {"store": "table"}
    assert "the database did not record a token id (OperationalError)" in caplog.text
    assert not held(engine, jti)  # the INSERT ran, and was rolled back
    assert TableReplayGuard(engine).first_use(jti, expires_at=now + 60, now=now)
    engine.dispose()


def test_a_missing_table_refuses(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    sink, now = MemorySink(), time.time()
    assert not TableReplayGuard(engine, events=sink).first_use(
        new_jti(), expires_at=now + 60, now=now
    )
    assert sink.actions() == ["replay_guard.unavailable"]
    engine.dispose()


def test_an_unreachable_database_refuses() -> None:
    engine = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{CLOSED_PORT}/none",
        connect_args={"connect_timeout": 2},
    )
    sink, now = MemorySink(), time.time()
    assert not TableReplayGuard(engine, events=sink).first_use(
        new_jti(), expires_at=now + 60, now=now
    )
    assert [e.reason for e in sink.events] == ["OperationalError"]
    engine.dispose()


@pytest.mark.postgres
def test_a_broken_postgres_connection_refuses_and_records_nothing(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    TableReplayGuard(engine).create_schema()
    jti, now = new_jti(), time.time()

    def terminate(conn: Any) -> None:  # the backend dies between INSERT and COMMIT
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    event.listen(engine, "commit", terminate)
    assert not TableReplayGuard(engine).first_use(jti, expires_at=now + 60, now=now)
    event.remove(engine, "commit", terminate)
    assert not held(engine, jti)
    assert TableReplayGuard(engine).first_use(jti, expires_at=now + 60, now=now)
    engine.dispose()


def test_an_overlong_id_is_refused(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    guard = TableReplayGuard(engine)
    guard.create_schema()
    now = time.time()
    assert not guard.first_use("x" * 256, expires_at=now + 60, now=now)
    assert rows(engine) == 0
    engine.dispose()


def test_prune_deletes_only_expired_rows(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    guard = TableReplayGuard(engine)
    guard.create_schema()
    now = time.time()
    old, live = new_jti(), new_jti()
    assert guard.first_use(old, expires_at=now + 10, now=now)
    assert guard.first_use(live, expires_at=now + 60, now=now)
    assert guard.prune(now + 5) == 0
    assert guard.prune(now + 10) == 1
    assert not held(engine, old) and held(engine, live)
    assert not guard.first_use(live, expires_at=now + 60, now=now + 10)
    assert guard.first_use(old, expires_at=now + 70, now=now + 10)
    assert guard.prune() == 0  # the wall clock: both still live
    engine.dispose()


def test_an_expired_row_is_taken_over_without_pruning(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    guard = TableReplayGuard(engine)
    guard.create_schema()
    jti, now = new_jti(), 1_000_000.0
    assert guard.first_use(jti, expires_at=now + 60, now=now)
    assert not guard.first_use(jti, expires_at=now + 120, now=now + 59.9)
    assert guard.first_use(jti, expires_at=now + 120, now=now + 60)
    assert not guard.first_use(jti, expires_at=now + 180, now=now + 61)
    assert rows(engine) == 1
    assert "replay.db" not in repr(guard)
    engine.dispose()
