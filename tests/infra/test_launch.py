"""The image's own files, run here as the containers run them: make-secrets.sh writes the
secret files, entrypoint.sh turns NAME_FILE into NAME, and launch.py starts prepare,
worklogs, the console and the edge as separate processes (on SQLite here, PostgreSQL in
the deployment), which then serve a user's request end to end."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.infra.manifests import INFRA, LAUNCHER

ENTRYPOINT = INFRA / "compose" / "entrypoint.sh"
MAKE_SECRETS = INFRA / "compose" / "make-secrets.sh"
VENV_BIN = Path(sys.executable).parent


def test_make_secrets_creates_each_file_once(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    first = subprocess.run(
        ["sh", str(MAKE_SECRETS), str(secrets)], capture_output=True, text=True, check=True
    )
    assert first.stdout.count("created") == 8
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    root_key = (secrets / "tenancy_root_key").read_text().strip()
    assert len(base64.b64decode(root_key, validate=True)) == 32
    assert len(bytes.fromhex((secrets / "tenancy_audit_key").read_text().strip())) == 32
    password = (secrets / "tenancy_app_password").read_text().strip()
    assert (secrets / "pgbouncer_userlist").read_text() == f'"tenancy_app" "{password}"\n'
    before = {p.name: p.read_text() for p in secrets.iterdir()}
    again = subprocess.run(
        ["sh", str(MAKE_SECRETS), str(secrets)], capture_output=True, text=True, check=True
    )
    assert again.stdout == ""  # nothing rotated under running data
    assert {p.name: p.read_text() for p in secrets.iterdir()} == before


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        check=False,
    )


def test_the_entrypoint_reads_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret value\n")
    done = run_entrypoint(
        {"PGPASSWORD_FILE": str(secret)},
        "sh",
        "-c",
        'printf "%s|%s" "$PGPASSWORD" "${PGPASSWORD_FILE-unset}"',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "s3cret value|unset"


def test_the_entrypoint_refuses_an_unreadable_or_doubled_secret(tmp_path: Path) -> None:
    missing = run_entrypoint({"PGPASSWORD_FILE": str(tmp_path / "absent")}, "true")
    assert missing.returncode == 66 and "cannot be read" in missing.stderr
    (tmp_path / "pw").write_text("x")
    both = run_entrypoint({"PGPASSWORD_FILE": str(tmp_path / "pw"), "PGPASSWORD": "y"}, "true")
    assert both.returncode == 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """prepare, then worklogs, console and edge as the manifests start them; yields the
    edge's URL and the environment."""
    secrets = tmp_path / "secrets"
    subprocess.run(["sh", str(MAKE_SECRETS), str(secrets)], capture_output=True, check=True)
    env = {
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TENANCY_REGION": "eu-central-1",
        "TENANCY_DATA_DIR": str(tmp_path / "data"),
        "TENANCY_ROOT_KEY_FILE": str(secrets / "tenancy_root_key"),
        "TENANCY_AUDIT_KEY_FILE": str(secrets / "tenancy_audit_key"),
        "TENANCY_EXPORT_SIGNING_KEY_FILE": str(secrets / "tenancy_export_signing_key"),
    }
    launch = ["sh", str(ENTRYPOINT), sys.executable, str(LAUNCHER)]
    prepared = subprocess.run(
        [*launch, "prepare"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert prepared.returncode == 0, prepared.stderr
    assert "prepared tenants: acme, globex" in prepared.stdout
    ports = {name: _free_port() for name in ("worklogs", "console", "edge")}
    host = ["--host", "127.0.0.1"]
    argvs = {
        "worklogs": ["worklogs", *host, "--port", str(ports["worklogs"])],
        "console": [
            "console",
            *host,
            "--port",
            str(ports["console"]),
        ],
        "edge": [
            "edge",
            *host,
            "--port",
            str(ports["edge"]),
            "--worklogs-url",
            f"http://127.0.0.1:{ports['worklogs']}",
        ],
    }
    console_env = {**env, "TENANCY_TICKETS_SECRET_FILE": str(secrets / "tenancy_tickets_secret")}
    logs = {name: tmp_path / f"{name}.log" for name in argvs}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in argvs.items():
        with logs[name].open("w") as log:
            processes[name] = subprocess.Popen(
                [*launch, *argv],
                env=console_env if name == "console" else env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    try:
        for name, process in processes.items():
            _wait_healthy(name, process, f"http://127.0.0.1:{ports[name]}/healthz", logs[name])
        yield f"http://127.0.0.1:{ports['edge']}", env
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(name: str, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{name} did not answer on {url}:\n{log.read_text()}")


@pytest.mark.e2e
def test_the_launched_services_serve_a_request_end_to_end(
    deployment: tuple[str, dict[str, str]],
) -> None:
    edge, env = deployment
    token = subprocess.run(
        [
            str(VENV_BIN / "tenancy"),
            "dev-token",
            "--tenant",
            "acme",
            "--sub",
            "alice",
            "--scopes",
            "worklogs:read worklogs:write",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{edge}/worklogs",
        headers=headers,
        json={"description": "infra check", "minutes": 15, "day": "2026-11-22"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    listed = httpx.get(f"{edge}/worklogs", headers=headers, timeout=10)
    assert listed.status_code == 200, listed.text
    assert "infra check" in listed.text
    # The backend takes no user's token: only the edge's context tokens.
    assert httpx.get(f"{edge}/healthz", timeout=5).status_code == 200
