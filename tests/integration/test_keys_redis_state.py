"""RedisKeyState between real processes: a key change made in one is seen on the other's
next use, and a lost subscription fails closed.

Process A is the test's own, with a warm data-key cache; process B is a spawned worker
(``tests.support.redis.KeysWorker``) with its own ``TenantKeys`` on the same SQLite file
and key file. Each test was run against a build with its mechanism broken, and failed:
A on a ``ProcessKeyState`` (shred, rotation, without acks, missed while disconnected);
no failing closed on a lost subscription (killed subscription, missed while
disconnected, partition, never repeat); generations kept across a reconnect (missed while
disconnected); no heartbeat check (partition); ``announce`` not waiting for acks
(unacknowledged subscriber).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tenancy.errors import ConfigurationError, KeyDestroyed
from tenancy.keys import Binding, TenantKeys
from tenancy.keys.redis_state import RedisKeyState
from tests.support.redis import (
    REDIS_URL,
    CountingProvider,
    KeysWorker,
    Partition,
    build_keys,
    listener_ids,
    redis_client,
    unique_prefix,
)

pytestmark = pytest.mark.redis

TENANT = "acme"
ROW = Binding(TENANT, "worklogs", "comment", "wl-1")
# How long a listener may take to apply a change announced without acks, in the tests:
# far above what bench/keys.py measures (p99 ~15 ms with the receiving process busy),
# for a loaded CI machine.
PROPAGATION_BOUND_S = 1.0


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis_client()
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    client.delete(f"{prefix}:{TENANT}")


@pytest.fixture
def state_a(prefix: str) -> Iterator[RedisKeyState]:
    with RedisKeyState(REDIS_URL, prefix=prefix) as state:
        yield state


@pytest.fixture
def warm_a(tmp_path: Path, state_a: RedisKeyState) -> tuple[TenantKeys, CountingProvider, bytes]:
    """A's key service with the tenant's data key in its cache."""
    keys, provider = build_keys(tmp_path, state_a)
    keys.provision(TENANT)
    ciphertext = keys.encrypt(b"secret", ROW)
    assert keys.decrypt(ciphertext, ROW) == b"secret"
    unwraps = provider.unwraps
    assert keys.decrypt(ciphertext, ROW) == b"secret"
    assert provider.unwraps == unwraps, "the cache is not warm"
    return keys, provider, ciphertext


def test_shred_in_another_process_refuses_the_next_decrypt(
    tmp_path: Path, prefix: str, warm_a: tuple[TenantKeys, CountingProvider, bytes]
) -> None:
    keys, _, ciphertext = warm_a
    with KeysWorker(tmp_path, prefix) as b:
        b.run("shred", TENANT)  # returns once A's listener has acknowledged
        with pytest.raises(KeyDestroyed):
            keys.decrypt(ciphertext, ROW)  # no wait at all


def test_rotation_in_another_process_is_a_miss_on_the_next_use(
    tmp_path: Path, prefix: str, warm_a: tuple[TenantKeys, CountingProvider, bytes]
) -> None:
    keys, provider, ciphertext = warm_a
    with KeysWorker(tmp_path, prefix) as b:
        b.run("rotate_kek", TENANT)  # re-wraps the data key, destroys the old KEK version
        before = provider.unwraps
        assert keys.decrypt(ciphertext, ROW) == b"secret"
        assert provider.unwraps == before + 1  # re-read and unwrapped under the new KEK
        assert keys.decrypt(ciphertext, ROW) == b"secret"
        assert provider.unwraps == before + 1  # and cached again


def test_change_without_acks_reaches_another_process_within_the_bound(
    tmp_path: Path, prefix: str, state_a: RedisKeyState
) -> None:
    seen = []
    with KeysWorker(tmp_path, prefix, ack_timeout=None) as b:
        for _ in range(20):
            before = state_a.generation(TENANT)
            reached, _ = b.run("announce", TENANT)
            assert reached == 2  # A's listener and B's own
            returned = time.perf_counter()
            while state_a.generation(TENANT) == before:
                assert time.perf_counter() - returned < PROPAGATION_BOUND_S, (
                    "A did not hear the change"
                )
            seen.append(time.perf_counter() - returned)
    print(
        f"A saw each change within median {statistics.median(seen) * 1e3:.2f} ms, "
        f"max {max(seen) * 1e3:.2f} ms of B's answer arriving"
    )


def _kill_listener(client: redis.Redis, prefix: str, state: RedisKeyState) -> str:
    """Kill A's subscription from the server side; return once A has noticed."""
    (listener,) = listener_ids(client, prefix, os.getpid())
    client.client_kill_filter(_id=listener)
    deadline = time.monotonic() + 2
    while state.healthy:
        assert time.monotonic() < deadline, "A did not notice its subscription was killed"
    return listener


def _await_healthy(state: RedisKeyState) -> None:
    deadline = time.monotonic() + 5
    while not state.healthy:
        assert time.monotonic() < deadline, "A did not subscribe again"
        time.sleep(0.005)


def test_killed_subscription_fails_closed_until_it_is_back(
    client: redis.Redis,
    prefix: str,
    state_a: RedisKeyState,
    warm_a: tuple[TenantKeys, CountingProvider, bytes],
) -> None:
    keys, provider, ciphertext = warm_a
    listener = _kill_listener(client, prefix, state_a)
    # Reconnection waits at least 0.1 s: every use meanwhile is a miss.
    before = provider.unwraps
    for _ in range(3):
        assert keys.decrypt(ciphertext, ROW) == b"secret"
    assert not state_a.healthy, "reconnected too soon for this test to mean anything"
    assert provider.unwraps == before + 3
    _await_healthy(state_a)
    assert listener_ids(client, prefix, os.getpid()) not in ([], [listener])
    before = provider.unwraps
    for _ in range(3):
        assert keys.decrypt(ciphertext, ROW) == b"secret"
    assert provider.unwraps == before + 1  # one miss, then the cache serves again


def test_change_missed_while_disconnected_is_a_miss_after_reconnecting(
    tmp_path: Path,
    client: redis.Redis,
    prefix: str,
    state_a: RedisKeyState,
    warm_a: tuple[TenantKeys, CountingProvider, bytes],
) -> None:
    keys, provider, ciphertext = warm_a
    with KeysWorker(tmp_path, prefix) as b:
        _kill_listener(client, prefix, state_a)
        reached, _ = b.run("announce", TENANT)
        assert reached == 1, "A heard the change: this test would mean nothing"
        _await_healthy(state_a)
        # Nothing was used during the gap: what A cached before it must not serve now.
        before = provider.unwraps
        for _ in range(3):
            assert keys.decrypt(ciphertext, ROW) == b"secret"
        assert provider.unwraps == before + 1


def test_silent_partition_fails_closed_within_two_heartbeats(prefix: str) -> None:
    partition = Partition()
    try:
        with RedisKeyState(
            partition.url, prefix=prefix, heartbeat=0.1, connect_timeout=0.5
        ) as state:
            time.sleep(0.3)  # several heartbeats answered: healthy through the proxy
            assert state.healthy
            partition.cut()
            cut = time.perf_counter()
            while state.healthy:
                assert time.perf_counter() - cut < 2 * 0.1 + PROPAGATION_BOUND_S, (
                    "a silently dead subscription still counts as healthy"
                )
                time.sleep(0.001)
            print(
                f"partition noticed after {(time.perf_counter() - cut) * 1e3:.0f} ms "
                f"(bound: two heartbeats, 200 ms)"
            )
            assert state.generation(TENANT) != state.generation(TENANT)
    finally:
        partition.close()


def test_unacknowledged_subscriber_delays_changed_by_ack_timeout_only(
    client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    silent = client.pubsub()  # hears the change, never acknowledges it
    silent.subscribe(prefix)
    try:
        with RedisKeyState(REDIS_URL, prefix=prefix, ack_timeout=0.3) as state:
            start = time.perf_counter()
            with caplog.at_level(logging.WARNING, logger="tenancy.keys"):
                assert state.announce(TENANT) == 2
            took = time.perf_counter() - start
            assert 0.3 <= took < 0.3 + PROPAGATION_BOUND_S
            assert "1 of 2 subscribers did not acknowledge" in caplog.text
            silent.close()
            start = time.perf_counter()
            assert state.announce(TENANT) == 1
            assert time.perf_counter() - start < 0.3
    finally:
        silent.close()


def test_generations_never_repeat_without_a_subscription(prefix: str) -> None:
    state = RedisKeyState(REDIS_URL, prefix=prefix)
    handed_out = {state.generation(TENANT), state.generation("other")}
    state.changed(TENANT)
    handed_out.add(state.generation(TENANT))
    state.close()
    after = [state.generation(TENANT) for _ in range(100)]
    assert not state.healthy
    assert len(set(after)) == 100 and not handed_out & set(after)


def test_prefix_namespaces_counters_and_channels(client: redis.Redis, prefix: str) -> None:
    with (
        RedisKeyState(REDIS_URL, prefix=prefix) as ours,
        RedisKeyState(REDIS_URL, prefix=prefix + "-other") as theirs,
    ):
        before = ours.generation(TENANT)
        assert theirs.announce(TENANT) == 1  # its own listener only
        assert ours.generation(TENANT) == before
        assert client.get(f"{prefix}-other:{TENANT}") == b"1"
        assert client.get(f"{prefix}:{TENANT}") is None
    client.delete(f"{prefix}-other:{TENANT}")


def test_unreachable_redis_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError) as raised:
        RedisKeyState("redis://:hunter2@127.0.0.1:1/0", connect_timeout=0.5)
    assert "127.0.0.1:1" in str(raised.value) and "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError):
        RedisKeyState("http://127.0.0.1:6379")


def test_the_tenant_registry_takes_redis_as_its_signal_across_hosts(
    tmp_path: Path, client: redis.Redis
) -> None:
    # Two registries on one database, each with its own RedisKeyState (two hosts' worth
    # of processes): a suspension through one is seen by the other on its next lookup.
    from sqlalchemy import create_engine

    from tenancy.tenants import TenantRegistry

    prefix = unique_prefix()
    engine = create_engine(f"sqlite:///{tmp_path / 'tenants.db'}")
    try:
        with (
            RedisKeyState(REDIS_URL, prefix=prefix) as here,
            RedisKeyState(REDIS_URL, prefix=prefix) as there,
        ):
            cli = TenantRegistry(engine, signal=here, cache_ttl=3600)
            cli.create_schema()
            tenant = cli.provision("initech", region="eu-central-1", display_name="Initech")
            replica = TenantRegistry(engine, signal=there, cache_ttl=3600)
            assert replica.get(tenant.id).status.value == "active"
            cli.suspend(tenant.id, actor="ops", reason="unpaid")  # returns once announced
            assert replica.get(tenant.id).status.value == "suspended"
    finally:
        engine.dispose()
        client.delete(*client.keys(f"{prefix}:*") or [f"{prefix}:none"])


def test_deployments_on_two_hosts_share_state_through_redis(
    tmp_path: Path, client: redis.Redis
) -> None:
    # Two data directories (two hosts share no files), one database and one Redis:
    # TENANCY_STATE_SIGNAL carries key and tenant changes between them.
    from tenancy.deployment import open_keys, open_registry
    from tenancy.settings import Settings

    database = f"sqlite:///{tmp_path / 'shared.db'}"

    def host(name: str) -> Settings:
        return Settings.from_env(
            {
                "TENANCY_DATA_DIR": str(tmp_path / name),
                "TENANCY_DATABASE_URL": database,
                "TENANCY_STATE_SIGNAL": REDIS_URL,
            }
        )

    first, second = open_registry(host("one")), open_registry(host("two"))
    try:  # each registry owns a listener thread: never leave one running
        tenant = first.provision("initech", region="eu-central-1", display_name="Initech")
        assert second.get(tenant.id).status.value == "active"
        first.suspend(tenant.id, actor="ops", reason="unpaid")
        assert second.get(tenant.id).status.value == "suspended"
    finally:
        first.close()
        second.close()
    state = open_keys(host("one")).state
    assert isinstance(state, RedisKeyState)
    state.close()
    with pytest.raises(ConfigurationError, match="TENANCY_STATE_SIGNAL"):
        Settings.from_env({"TENANCY_DATA_DIR": str(tmp_path), "TENANCY_STATE_SIGNAL": "x://y"})
