"""One local key file, several processes: no lost update, and no destroyed key comes back.

Real processes (``multiprocessing``, spawn) share one ``keks.json``, as the demo's
services, replicas and the CLI do. Each worker creates, wraps under, rotates, disables,
enables and destroys keys of its own, all at once; meanwhile a *stale* process holds a
``LocalKeyProvider`` opened before another process destroyed a key, and then creates a
key of its own. A provider that writes back what it read earlier (the file before this
test's fix: an in-memory dict written without a lock or a re-read) loses the others'
keys and brings the destroyed key back to life.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import traceback
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest

from tenancy.errors import KeyDestroyed, KeyUnavailable
from tenancy.keys import KeyRef, LocalKeyProvider, RootKey

WORKERS = 6
ROUNDS = 6
TIMEOUT = 60
DEK = bytes(range(32))


def context(tenant_id: str) -> dict[str, str]:
    return {"tenancy": "dek/v1", "tenant_id": tenant_id, "purpose": "worklogs", "dek_version": "1"}


def _worker(path: str, root: bytes, worker: int, go: Barrier, results: Queue[Any]) -> None:
    """Own keys only; reports what the file must say about each of them at the end."""
    try:
        provider = LocalKeyProvider(path, root=RootKey(root))
        go.wait(TIMEOUT)
        expected: dict[str, dict[str, Any]] = {}
        for n in range(ROUNDS):
            tenant = f"w{worker}-{n}"
            ref = provider.create_key(tenant_id=tenant)
            blob, used = provider.wrap(ref, DEK, context=context(tenant))
            provider.rotate(ref)
            provider.disable(ref)
            provider.enable(ref)
            fate = ("destroyed", "disabled", "rotated")[n % 3]
            if fate == "destroyed":
                provider.destroy(ref)
            elif fate == "disabled":
                provider.disable(ref)
            else:
                provider.rotate(ref)
            expected[ref.key_id] = {
                "tenant": tenant,
                "fate": fate,
                "blob": blob.hex(),
                "version": used.version,
                "current": "3" if fate == "rotated" else "2",
            }
        results.put(("worker", worker, expected))
    except BaseException:  # reported, so that the test fails with the cause
        results.put(("error", worker, traceback.format_exc()))


def _stale(path: str, root: bytes, opened: Event, destroyed: Event, results: Queue[Any]) -> None:
    """Opens the provider, waits until another process destroyed a key, then writes."""
    try:
        provider = LocalKeyProvider(path, root=RootKey(root))
        opened.set()
        if not destroyed.wait(TIMEOUT):
            raise TimeoutError("the victim was never destroyed")
        ref = provider.create_key(tenant_id="latecomer")
        results.put(("stale", 0, {ref.key_id: {"tenant": "latecomer"}}))
    except BaseException:
        results.put(("error", -1, traceback.format_exc()))


def test_processes_sharing_a_key_file_lose_no_change_and_resurrect_no_destroyed_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "keks.json"
    root = os.urandom(32)
    mine = LocalKeyProvider(path, root=RootKey(root))
    victim = mine.create_key(tenant_id="victim")
    victim_blob, _ = mine.wrap(victim, DEK, context=context("victim"))

    spawn = multiprocessing.get_context("spawn")
    results: Queue[Any] = spawn.Queue()
    go = spawn.Barrier(WORKERS + 1)
    opened, destroyed = spawn.Event(), spawn.Event()
    processes = [spawn.Process(target=_stale, args=(str(path), root, opened, destroyed, results))]
    processes += [
        spawn.Process(target=_worker, args=(str(path), root, n, go, results))
        for n in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        assert opened.wait(TIMEOUT), "the stale process never opened its provider"
        mine.destroy(victim)  # by this process, after the stale one read the file
        destroyed.set()
        go.wait(TIMEOUT)
        reports = [results.get(timeout=TIMEOUT) for _ in processes]
    finally:
        for process in processes:
            process.join(TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
    errors = [report for report in reports if report[0] == "error"]
    assert not errors, "\n".join(str(e[2]) for e in errors)

    document = json.loads(path.read_text(encoding="utf-8"))  # valid JSON, whole
    assert document["version"] == 1
    keys = document["keys"]
    expected: dict[str, dict[str, Any]] = {}
    for _, _, report in reports:
        expected.update(report)
    assert len(expected) == WORKERS * ROUNDS + 1
    assert set(keys) == {*expected, victim.key_id}  # nothing lost, nothing extra

    fresh = LocalKeyProvider(path, root=RootKey(root))
    for key_id, want in expected.items():
        entry = keys[key_id]
        assert entry["tenant_id"] == want["tenant"]
        if "fate" not in want:
            continue  # the stale process's own key: present is all it promised
        ref = KeyRef("local", key_id, want["version"])
        blob, ctx = bytes.fromhex(want["blob"]), context(want["tenant"])
        if want["fate"] == "destroyed":
            assert entry["destroyed"] and entry["versions"] == {}
            with pytest.raises(KeyDestroyed):
                fresh.unwrap(ref, blob, context=ctx)
            continue
        assert not entry["destroyed"] and entry["current"] == want["current"]
        assert entry["enabled"] == (want["fate"] == "rotated")
        if want["fate"] == "disabled":
            with pytest.raises(KeyUnavailable) as refused:
                fresh.unwrap(ref, blob, context=ctx)
            assert type(refused.value) is KeyUnavailable  # disabled, not destroyed
        else:
            assert fresh.unwrap(ref, blob, context=ctx) == DEK  # old versions still open

    # The key destroyed while the stale process held its provider stays destroyed.
    assert keys[victim.key_id]["destroyed"] and keys[victim.key_id]["versions"] == {}
    assert not fresh.describe(victim).enabled
    with pytest.raises(KeyDestroyed):
        fresh.unwrap(victim, victim_blob, context=context("victim"))
