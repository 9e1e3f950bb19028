"""`tenancy demo` as real processes on loopback: the edge in front, worklogs behind it.

Driven with the real CLI and HTTP. Tokens that attack the backend are minted here with
the edge's own key file (what a compromised or buggy edge could sign) or with keys the
backend has never seen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext
from tenancy.identity import DEV_ISSUER
from tenancy.propagation import ContextTokenMinter, ServiceKeyring

pytestmark = pytest.mark.e2e
TENANCY = [sys.executable, "-m", "tenancy.cli"]
ENTRY = {"description": "audit prep", "minutes": 60, "day": "2026-11-21"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Demo:
    edge: str
    backend: str
    data: Path
    console: str = ""


def wait_ready(proc: subprocess.Popen[bytes], url: str, started: float) -> None:
    deadline = started + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            output = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"demo did not become ready:\n{output}")
        time.sleep(0.05)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with running_demo(tmp_path / "demo") as running:
        yield running


@contextmanager
def running_demo(data: Path, *, env: Mapping[str, str] | None = None) -> Iterator[Demo]:
    """`tenancy demo` over ``data`` as real processes, stopped (SIGINT) on exit."""
    port, backend_port, console_port = free_port(), free_port(), free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            *TENANCY,
            "demo",
            "--port",
            str(port),
            "--backend-port",
            str(backend_port),
            "--console-port",
            str(console_port),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = Demo(
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{backend_port}",
        data,
        f"http://127.0.0.1:{console_port}",
    )
    try:
        wait_ready(proc, running.edge, started)
        # Reported, not asserted: the target (< 3 s) is measured, never a timing test.
        print(f"\ndemo (edge + worklogs) ready after {time.monotonic() - started:.2f} s")
        yield running
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the demo as Ctrl-C would; kill it if it does not exit within 15 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def dev_token(data: Path, tenant: str, sub: str, scopes: str | None = None) -> str:
    extra = ["--scopes", scopes] if scopes is not None else []
    out = subprocess.run(
        [*TENANCY, "dev-token", "--tenant", tenant, "--sub", sub, "--data-dir", str(data), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def tenant_ids(data: Path) -> dict[str, str]:
    listing = subprocess.run(
        [*TENANCY, "tenants", "list", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split("\t")[0]: line.split("\t")[1] for line in listing.splitlines()}


def as_edge(
    data: Path, *, clock: FrozenClock | None = None, ring: ServiceKeyring | None = None
) -> ContextTokenMinter:
    """A minter holding the edge's real signing key (or ``ring``)."""
    ring = ring or ServiceKeyring.load_or_create(data / "service-keys" / "edge", "edge")
    return ContextTokenMinter(ring, clock=clock) if clock else ContextTokenMinter(ring)


def acme_context(data: Path, scopes: frozenset[str]) -> TenantContext:
    tid = tenant_ids(data)["acme"]
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=tid,
        subject="alice",
        scopes=scopes,
        roles=frozenset({"member"}),
    )
    return TenantContext(tid, "acme", "eu-central-1", principal, "e2e-1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_tenant_sees_only_its_own_worklogs_through_the_edge(demo: Demo) -> None:
    acme = bearer(dev_token(demo.data, "acme", "alice"))
    globex = bearer(dev_token(demo.data, "globex", "gina"))
    with httpx.Client(base_url=demo.edge, timeout=5) as http:
        assert http.get("/worklogs").status_code == 401
        theirs = http.post(
            "/worklogs", json={**ENTRY, "description": "globex secret"}, headers=globex
        ).json()
        mine = http.post("/worklogs", json=ENTRY, headers=acme)
        assert mine.status_code == 201
        for extra in (
            {},
            {"X-Tenant-ID": "globex"},
            {"X-Tenant-ID": theirs["tenant_id"]},
            {"baggage": f"tenant_id={theirs['tenant_id']}"},
        ):
            items = http.get("/worklogs", headers={**acme, **extra}).json()["items"]
            assert [w["id"] for w in items] == [mine.json()["id"]]
        assert http.get(f"/worklogs/{theirs['id']}", headers=acme).status_code == 404
        assert http.get(f"/worklogs/{theirs['id']}", headers=globex).json() == theirs


def test_users_tenant_reaches_the_worklogs_process_via_a_context_token(demo: Demo) -> None:
    token = dev_token(demo.data, "acme", "alice")
    with httpx.Client(base_url=demo.edge, timeout=5) as http:
        me = http.get("/whoami", headers={**bearer(token), "X-Tenant-ID": "globex"})
    assert me.status_code == 200
    body = me.json()
    assert (body["tenant"], body["subject"], body["caller"]) == ("acme", "alice", "edge")
    assert body["request_id"] == me.headers["x-request-id"]


def test_users_token_sent_straight_to_worklogs_is_refused(demo: Demo) -> None:
    token = dev_token(demo.data, "acme", "alice")
    with httpx.Client(base_url=demo.backend, timeout=5) as http:
        for path in ("/worklogs", "/whoami"):
            refused = http.get(path, headers=bearer(token))
            assert refused.status_code == 401
            assert refused.json()["type"] == "urn:tenancy:problem:invalid-token"


def test_context_token_minted_by_the_edge_is_accepted_once(demo: Demo) -> None:
    token = as_edge(demo.data).mint(
        acme_context(demo.data, frozenset({"worklogs:read"})),
        audience="worklogs",
        scopes=["worklogs:read"],
    )
    with httpx.Client(base_url=demo.backend, timeout=5) as http:
        assert http.get("/worklogs", headers=bearer(token)).status_code == 200
        replayed = http.get("/worklogs", headers=bearer(token))
    assert replayed.status_code == 401


def test_forged_context_tokens_are_refused_by_worklogs(demo: Demo) -> None:
    reader = acme_context(demo.data, frozenset({"worklogs:read"}))
    past = FrozenClock(datetime.now(UTC) - timedelta(minutes=5))
    admin = acme_context(demo.data, frozenset({"worklogs:read", "worklogs:admin"}))
    forged = {
        "another audience": as_edge(demo.data).mint(
            reader, audience="billing", scopes=["worklogs:read"]
        ),
        "expired": as_edge(demo.data, clock=past).mint(
            reader, audience="worklogs", scopes=["worklogs:read"]
        ),
        "unknown issuer": as_edge(demo.data, ring=ServiceKeyring.generate("billing")).mint(
            reader, audience="worklogs", scopes=["worklogs:read"]
        ),
        "impostor edge key": as_edge(demo.data, ring=ServiceKeyring.generate("edge")).mint(
            reader, audience="worklogs", scopes=["worklogs:read"]
        ),
        "scopes beyond the edge's": as_edge(demo.data).mint(
            admin, audience="worklogs", scopes=["worklogs:admin"]
        ),
    }
    with httpx.Client(base_url=demo.backend, timeout=5) as http:
        answers = {
            name: http.get("/worklogs", headers=bearer(token)).status_code
            for name, token in forged.items()
        }
    assert answers == dict.fromkeys(forged, 401)


def test_scopes_beyond_the_callers_are_refused_and_nothing_is_written(demo: Demo) -> None:
    reader = bearer(dev_token(demo.data, "acme", "rita", scopes="worklogs:read"))
    writer = bearer(dev_token(demo.data, "acme", "alice"))
    with httpx.Client(base_url=demo.edge, timeout=5) as http:
        refused = http.post("/worklogs", json=ENTRY, headers=reader)
        assert refused.status_code == 403  # the edge's policy refuses: no call downstream
        assert refused.json()["type"] == "urn:tenancy:problem:access-denied"
        assert http.get("/worklogs", headers=writer).json()["items"] == []


def test_stopping_the_demo_stops_the_backend_and_the_console(tmp_path: Path) -> None:
    port, backend_port, console_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            *TENANCY,
            "demo",
            "--port",
            str(port),
            "--backend-port",
            str(backend_port),
            "--console-port",
            str(console_port),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", time.monotonic())
        assert httpx.get(f"http://127.0.0.1:{console_port}/login", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    for child in (backend_port, console_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{child}/healthz", timeout=2)


def test_support_flow_across_the_demo_processes(demo: Demo) -> None:
    def cli(*args: str) -> str:
        return subprocess.run(
            [*TENANCY, *args, "--data-dir", str(demo.data)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    sam = cli(
        "dev-token",
        "--kind",
        "support",
        "--sub",
        "sam",
        "--mfa",
        "--trusted-device",
        "--scopes",
        "worklogs:read",
    )
    staff = {"Authorization": f"Bearer {sam}", "x-support-target": "acme"}
    with httpx.Client(base_url=demo.edge, timeout=5) as http:
        assert http.get("/worklogs", headers=staff).status_code == 403
        grant_id = cli(
            "support",
            "request",
            "--tenant",
            "acme",
            "--as",
            "sam",
            "--ticket",
            "T-1",
            "--justification",
            "export broken",
            "--scopes",
            "worklogs:read",
            "--hours",
            "2",
        ).split()[-1]
        cli(
            "support",
            "approve",
            grant_id,
            "--tenant",
            "acme",
            "--as",
            "ann",
            "--roles",
            "admin",
            "--mfa",
            "--hours",
            "1",
        )
        me = http.get("/whoami", headers=staff)
        assert me.status_code == 200 and me.json()["tenant"] == "acme"
        cli(
            "support",
            "revoke",
            grant_id,
            "--tenant",
            "acme",
            "--as",
            "ann",
            "--roles",
            "admin",
            "--reason",
            "done",
        )
        assert http.get("/whoami", headers=staff).status_code == 403


def test_the_demos_audit_trail_records_requests_and_verifies(demo: Demo) -> None:
    token = dev_token(demo.data, "acme", "alice")
    with httpx.Client(base_url=demo.edge, timeout=5) as http:
        assert http.get("/worklogs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert (
            http.post(
                "/worklogs", json={**ENTRY, "comment": "audited"}, headers=bearer(token)
            ).status_code
            == 201
        )
    time.sleep(0.5)  # the audit writers flush every 50 ms
    verify = subprocess.run(
        [*TENANCY, "audit", "verify", "--tenant", "acme", "--data-dir", str(demo.data)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    exported = subprocess.run(
        [*TENANCY, "audit", "export", "--tenant", "acme", "--data-dir", str(demo.data)],
        capture_output=True,
        text=True,
        check=True,
    )
    actions = {json.loads(line)["action"] for line in exported.stdout.splitlines()}
    assert {"key.wrap", "tenant.provisioned"} & actions
    platform = subprocess.run(
        [*TENANCY, "audit", "export", "--tenant", "platform", "--data-dir", str(demo.data)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "auth.refused" in platform
