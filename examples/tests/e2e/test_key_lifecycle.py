"""A tenant's key lifecycle across real processes: the running demo, the CLI, replicas.

Every key change here is made by the CLI, a separate process, while `tenancy demo` (edge,
worklogs, console) runs; the assertions are about what the *running* services answer on
their very next request. Before the shared key state (``tenancy.keys.state``) each
process kept its unwrapped data keys for the cache TTL (300 s) whatever another process
did, so every "at once" below would have been "within five minutes".

Copies of the database are taken with SQLite's own backup API while the demo runs, and
opened afterwards by a fresh Python process over the live key files, as a restored backup
would be.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.tests.e2e.test_demo import (
    ENTRY,
    TENANCY,
    Demo,
    as_edge,
    bearer,
    dev_token,
    free_port,
    running_demo,
    tenant_ids,
    wait_ready,
)
from tenancy.context import Principal, TenantContext
from tenancy.identity import DEV_ISSUER
from tenancy.keys.envelope import header_version

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"
# Short enough to wait for, long enough to cover one CLI start (~0.8 s) on a busy machine.
SHORT_TTL = 3.0


def demo_env() -> dict[str, str]:
    """The demo on SQLite in its data directory: the copies below are SQLite backups."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TENANCY_DATABASE_URL", None)
    return env


@contextmanager
def worklogs_replica(data: Path) -> Iterator[str]:
    """A second worklogs backend (`tenancy serve worklogs`) over the same data directory:
    same database, key files and key-state file, its own caches. Exits with this test."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            *TENANCY,
            "serve",
            "worklogs",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--parent-pid",
            str(os.getpid()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=demo_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, started)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with running_demo(tmp_path / "demo", env=demo_env()) as running:
        yield running


def cli(data: Path, *args: str) -> str:
    """Run one `tenancy` command as its own process; its output, or the test fails."""
    done = subprocess.run(
        [*TENANCY, *args, "--data-dir", str(data)], capture_output=True, text=True, env=demo_env()
    )
    assert done.returncode == 0, f"tenancy {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == f"urn:tenancy:problem:{code}"


def write(http: httpx.Client, headers: dict[str, str], comment: str) -> httpx.Response:
    return http.post("/worklogs", json={**ENTRY, "comment": comment}, headers=headers)


def read_comment(http: httpx.Client, headers: dict[str, str], worklog_id: str) -> str:
    response = http.get(f"/worklogs/{worklog_id}", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["comment"])


def stored(data: Path, tenant_id: str) -> dict[str, bytes]:
    """The tenant's worklog rows as stored: id -> the comment's ciphertext."""
    with sqlite3.connect(data / "tenancy.db", timeout=10) as db:
        rows = db.execute(
            "SELECT id, comment FROM worklogs WHERE tenant_id = ?", (tenant_id,)
        ).fetchall()
    db.close()
    return {str(row_id): bytes(comment) for row_id, comment in rows}


def test_shred_by_the_cli_is_refused_by_the_running_services_at_once(demo: Demo) -> None:
    """Before: the backend kept the unwrapped data key for its 300 s cache TTL and went on
    serving the plaintext (and sealing new writes) after the CLI destroyed the KEK."""
    acme = bearer(dev_token(demo.data, "acme", "alice"))
    globex = bearer(dev_token(demo.data, "globex", "gina"))
    with httpx.Client(base_url=demo.edge, timeout=10) as http:
        mine = write(http, acme, "acme secret")
        theirs = write(http, globex, "globex secret")
        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert read_comment(http, acme, mine.json()["id"]) == "acme secret"  # cached now

        cli(demo.data, "keys", "shred", "--tenant", "acme", "--confirm", "acme")

        assert_problem(
            http.get(f"/worklogs/{mine.json()['id']}", headers=acme), 410, "key-destroyed"
        )
        assert_problem(write(http, acme, "written after the shred"), 410, "key-destroyed")
        assert read_comment(http, globex, theirs.json()["id"]) == "globex secret"
    acme_id = tenant_ids(demo.data)["acme"]
    assert list(stored(demo.data, acme_id)) == [mine.json()["id"]]  # nothing new stored


def test_cmk_switch_is_seen_at_once_and_a_customer_revocation_within_the_tenants_ttl(
    demo: Demo,
) -> None:
    """The switch is a platform-side change (seen on the next request); the customer
    disabling its own key is not observable, so the tenant's TTL, changed by the CLI
    while the services run, bounds it. Before: `keys ttl` did not exist and the backend
    used the cache's 300 s for everyone, so the read after the TTL was still served."""
    acme = bearer(dev_token(demo.data, "acme", "alice"))
    with httpx.Client(base_url=demo.edge, timeout=10) as http:
        worklog = write(http, acme, "under a CMK soon")
        assert worklog.status_code == 201
        path = f"/worklogs/{worklog.json()['id']}"
        cli(demo.data, "keys", "ttl", "--tenant", "acme", "--seconds", f"{SHORT_TTL:g}")
        cli(demo.data, "keys", "use-cmk", "--tenant", "acme")

        # This read unwraps again through both layers and caches for SHORT_TTL seconds,
        # from some moment between `asked` and `filled`.
        asked = time.monotonic()
        assert read_comment(http, acme, worklog.json()["id"]) == "under a CMK soon"
        filled = time.monotonic()
        cli(demo.data, "keys", "revoke-test", "--tenant", "acme")
        still = http.get(path, headers=acme)
        elapsed = time.monotonic() - asked
        assert elapsed < SHORT_TTL, f"revoke-test took {elapsed:.1f} s: cannot show caching"
        assert still.status_code == 200 and still.json()["comment"] == "under a CMK soon"

        time.sleep(max(0.0, filled + SHORT_TTL + 0.3 - time.monotonic()))
        assert_problem(http.get(path, headers=acme), 503, "key-unavailable")
        assert_problem(write(http, acme, "refused too"), 503, "key-unavailable")

        cli(demo.data, "keys", "revoke-test", "--tenant", "acme", "--restore")
        assert read_comment(http, acme, worklog.json()["id"]) == "under a CMK soon"
    status = cli(demo.data, "keys", "status", "--tenant", "acme")
    assert "\tcmk\tcustomer-local:" in status and "cache-ttl=3s" in status


def test_platform_side_disable_is_refused_on_the_very_next_read(demo: Demo) -> None:
    """globex is on a platform key: disabling it is the platform's own change, seen at
    once. Before: revoke-test disabled it in the key file, and the backend read on from
    its cache for 300 s."""
    globex = bearer(dev_token(demo.data, "globex", "gina"))
    acme = bearer(dev_token(demo.data, "acme", "alice"))
    with httpx.Client(base_url=demo.edge, timeout=10) as http:
        theirs = write(http, globex, "globex secret").json()["id"]
        mine = write(http, acme, "acme secret").json()["id"]
        assert read_comment(http, globex, theirs) == "globex secret"

        cli(demo.data, "keys", "revoke-test", "--tenant", "globex")
        assert_problem(http.get(f"/worklogs/{theirs}", headers=globex), 503, "key-unavailable")
        assert read_comment(http, acme, mine) == "acme secret"

        cli(demo.data, "keys", "revoke-test", "--tenant", "globex", "--restore")
        assert read_comment(http, globex, theirs) == "globex secret"


# Opens database copies in a fresh process, over the demo's live key files (a restored
# backup): reads the worklog through the worklogs store, and unwraps every copied data
# key through KeyLayers; reports what happened and whether the customer's key is enabled.
OPEN_COPIES = """
import json, sys
from tenancy.deployment import open_engine, open_keys
from tenancy_examples.worklogs.store import WorklogStore
from tenancy.clock import SYSTEM_CLOCK
from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import KeyManagementError
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER
from tenancy.keys.layers import KeyLayers
from tenancy.settings import Settings

def attempt(operation):
    try:
        operation()
        return "opened"
    except KeyManagementError as exc:
        return type(exc).__name__

report = {}
for label, copy, tenant_id, worklog_id in json.loads(sys.argv[1]):
    settings = Settings.from_env(data_dir=copy)
    engine = open_engine(settings)
    keys = open_keys(settings, engine=engine)
    layers = KeyLayers([keys.provider("local"), keys.provider("customer-local")],
                       events=MemorySink(), clock=SYSTEM_CLOCK)
    records = keys.status(tenant_id).data_keys
    principal = Principal(issuer=DEV_ISSUER, tenant_id=tenant_id, subject="restorer",
                          scopes=frozenset({"worklogs:read"}), roles=frozenset({"member"}))
    with bind(TenantContext(tenant_id, "copy", settings.region, principal, "copy-1")):
        read = attempt(lambda: WorklogStore(engine, keys=keys).get(worklog_id))
    cmks = {r.cmk for r in records if r.cmk is not None}
    report[label] = {
        "read": read,
        "unwrap": sorted({attempt(lambda r=r: layers.unwrap(r)) for r in records}),
        "cmk_enabled": [keys.provider(c.provider).describe(c).enabled for c in cmks],
        "data_keys": len(records),
    }
    engine.dispose()
print(json.dumps(report))
"""


def backup(demo: Demo, name: str) -> Path:
    """A consistent copy of the running demo's database (SQLite's backup API, as a backup
    tool would take it), next to a link to the live key files."""
    copy = demo.data.parent / name
    copy.mkdir()
    (copy / "keys").symlink_to(demo.data / "keys")
    with (
        sqlite3.connect(demo.data / "tenancy.db", timeout=10) as source,
        sqlite3.connect(copy / "tenancy.db") as target,
    ):
        source.backup(target)
    source.close()
    target.close()
    return copy


def open_copies(cases: list[tuple[str, Path, str, str]]) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            OPEN_COPIES,
            json.dumps([(label, str(copy), tid, wid) for label, copy, tid, wid in cases]),
        ],
        capture_output=True,
        text=True,
        env=demo_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_copies_taken_before_a_cmk_switch_or_a_shred_open_with_nothing(demo: Demo) -> None:
    """The switch destroys the old platform KEK version; the shred destroys the platform
    KEK of a CMK tenant. Either way a copy (backup) of the wrapped data keys opens with
    nothing, while the customer's key is still enabled. Before: the switch kept the old
    platform KEK alive, and the shred of a CMK tenant destroyed no key at all (it only
    forgot the wrapped data keys), so both copies opened; and the running backend kept
    serving the shredded row from its cache."""
    ids = tenant_ids(demo.data)
    acme = bearer(dev_token(demo.data, "acme", "alice"))
    with httpx.Client(base_url=demo.edge, timeout=10) as http:
        worklog = write(http, acme, "acme secret")
        assert worklog.status_code == 201
        wid = worklog.json()["id"]
        before_switch = backup(demo, "before-switch")
        cli(demo.data, "keys", "use-cmk", "--tenant", "acme")
        assert read_comment(http, acme, wid) == "acme secret"  # live: still readable
        before_shred = backup(demo, "before-shred")
        control = open_copies([("before-shred", before_shred, ids["acme"], wid)])
        cli(demo.data, "keys", "shred", "--tenant", "acme", "--confirm", "acme")
        assert_problem(http.get(f"/worklogs/{wid}", headers=acme), 410, "key-destroyed")

    # The control: the copy taken after the switch opens, before the shred.
    assert control["before-shred"] == {
        "read": "opened",
        "unwrap": ["opened"],
        "cmk_enabled": [True],
        "data_keys": 1,
    }
    report = open_copies(
        [
            ("before-switch", before_switch, ids["acme"], wid),
            ("before-shred", before_shred, ids["acme"], wid),
        ]
    )
    assert report["before-switch"] == {
        "read": "KeyDestroyed",
        "unwrap": ["KeyDestroyed"],
        "cmk_enabled": [],
        "data_keys": 1,
    }
    assert report["before-shred"] == {
        "read": "KeyDestroyed",
        "unwrap": ["KeyDestroyed"],
        "cmk_enabled": [True],
        "data_keys": 1,
    }


def test_copy_taken_before_a_kek_rotation_opens_with_nothing_after_it(demo: Demo) -> None:
    """The demo destroys replaced KEK versions at once (no grace). Before: rotation kept
    every old version, so a backup's wrapped data keys opened for ever."""
    ids = tenant_ids(demo.data)
    globex = bearer(dev_token(demo.data, "globex", "gina"))
    with httpx.Client(base_url=demo.edge, timeout=10) as http:
        wid = write(http, globex, "globex secret").json()["id"]
        before = backup(demo, "before-rotation")
        assert open_copies([("before", before, ids["globex"], wid)])["before"]["read"] == "opened"
        cli(demo.data, "keys", "rotate", "--tenant", "globex")
        assert read_comment(http, globex, wid) == "globex secret"  # live: re-wrapped
        after = backup(demo, "after-rotation")
    report = open_copies(
        [("before", before, ids["globex"], wid), ("after", after, ids["globex"], wid)]
    )
    assert (report["before"]["read"], report["before"]["unwrap"]) == (
        "KeyDestroyed",
        ["KeyDestroyed"],
    )
    assert (report["after"]["read"], report["after"]["unwrap"]) == ("opened", ["opened"])


def test_tenant_created_by_the_cli_while_the_demo_runs_gets_a_working_key(demo: Demo) -> None:
    """Before: `tenants create` without a customer key provisioned no key, and the new
    tenant's first encrypted write was 503 key-unavailable."""
    created = cli(demo.data, "tenants", "create", "initech", "--region", "eu-central-1")
    assert "\tkey\tlocal:" in created
    initech = bearer(dev_token(demo.data, "initech", "peter"))
    cli(demo.data, "tenants", "create", "hooli", "--region", "eu-central-1", "--no-key")
    hooli = bearer(dev_token(demo.data, "hooli", "gavin"))
    with httpx.Client(base_url=demo.edge, timeout=10) as http:
        worklog = write(http, initech, "initech secret")
        assert worklog.status_code == 201, worklog.text
        assert read_comment(http, initech, worklog.json()["id"]) == "initech secret"

        assert_problem(write(http, hooli, "no key yet"), 503, "key-unavailable")
        cli(demo.data, "keys", "provision", "--tenant", "hooli")
        later = write(http, hooli, "hooli secret")
        assert later.status_code == 201, later.text
        assert read_comment(http, hooli, later.json()["id"]) == "hooli secret"
    assert list(stored(demo.data, tenant_ids(demo.data)["hooli"])) == [later.json()["id"]]


def context_for(data: Path, slug: str, scope: str) -> TenantContext:
    tid = tenant_ids(data)[slug]
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=tid,
        subject="alice",
        scopes=frozenset({scope}),
        roles=frozenset({"member"}),
    )
    return TenantContext(tid, slug, "eu-central-1", principal, "e2e-keys")


class Replica:
    """Calls one worklogs backend directly, with a fresh context token per request minted
    with the edge's own key (what the edge sends)."""

    def __init__(self, url: str, data: Path, slug: str) -> None:
        self.url = url
        self.minter = as_edge(data)
        self.reader = context_for(data, slug, "worklogs:read")
        self.writer = context_for(data, slug, "worklogs:write")

    def _auth(self, ctx: TenantContext, scope: str) -> dict[str, str]:
        return bearer(self.minter.mint(ctx, audience="worklogs", scopes=[scope]))

    def get(self, worklog_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}/worklogs/{worklog_id}",
            timeout=10,
            headers=self._auth(self.reader, "worklogs:read"),
        )

    def post(self, comment: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/worklogs",
            json={**ENTRY, "comment": comment},
            timeout=10,
            headers=self._auth(self.writer, "worklogs:write"),
        )


def test_two_backend_replicas_see_the_clis_rotation_and_shred_on_their_next_request(
    demo: Demo,
) -> None:
    """Two worklogs backends over one database and one key directory: the demo's own
    (replica 1) and a second `tenancy serve worklogs` (replica 2), both called directly
    with context tokens minted with the edge's key (one edge fronts one backend in the
    demo). Before: after a data-key rotation replica 1 kept sealing with the old data key,
    and after the shred both replicas served from their caches for 300 s."""
    acme_id = tenant_ids(demo.data)["acme"]
    with worklogs_replica(demo.data) as second:
        one, two = Replica(demo.backend, demo.data, "acme"), Replica(second, demo.data, "acme")
        first = one.post("written by replica 1")
        assert first.status_code == 201, first.text
        wid = first.json()["id"]
        assert two.get(wid).json()["comment"] == "written by replica 1"  # both cached
        assert one.get(wid).json()["comment"] == "written by replica 1"

        cli(demo.data, "keys", "rotate", "--tenant", "acme")  # old KEK version destroyed
        after = one.post("after the KEK rotation")
        assert after.status_code == 201, after.text
        assert two.get(after.json()["id"]).json()["comment"] == "after the KEK rotation"
        assert two.get(wid).status_code == one.get(wid).status_code == 200

        cli(demo.data, "keys", "rotate", "--tenant", "acme", "--data-key", "worklogs")
        rotated = one.post("after the data-key rotation")
        assert rotated.status_code == 201, rotated.text
        assert header_version(stored(demo.data, acme_id)[rotated.json()["id"]]) == 2
        assert two.get(rotated.json()["id"]).json()["comment"] == "after the data-key rotation"

        cli(demo.data, "keys", "shred", "--tenant", "acme", "--confirm", "acme")
        assert_problem(one.get(wid), 410, "key-destroyed")
        assert_problem(two.get(wid), 410, "key-destroyed")
        assert_problem(two.post("refused"), 410, "key-destroyed")
    assert len(stored(demo.data, acme_id)) == 3
