"""HAProxy, PgBouncer and OPA configuration: checked by the real tools where they exist
here (haproxy -c; PgBouncer started on the file), and for what they must say."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.infra.manifests import (
    COMPOSE_FILE,
    HAPROXY_CFG,
    OPA_CONFIG,
    PGBOUNCER_INI,
    compose_document,
    pgbouncer_config,
    pgbouncer_problems,
    scanned_files,
    text_secret_problems,
)
from tests.infra.tools import ensure_tool


@pytest.fixture(scope="module")
def haproxy() -> str:
    return ensure_tool("haproxy", "haproxy")


def haproxy_check(binary: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )


def test_haproxy_accepts_the_config(haproxy: str) -> None:
    done = haproxy_check(haproxy, HAPROXY_CFG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout
    # Offline, the compose service names do not resolve: that, and nothing else, warns
    # (init-addr none keeps those slots down until Docker's DNS answers).
    warnings = [line for line in done.stderr.splitlines() if "[WARNING]" in line]
    assert warnings and all("could not resolve address" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("default_backend worklogs", "default_backend worklog"),
        ("http-check expect status 200", "http-check expect sttus 200"),
        ("bind :8080", "bind :80800"),
    ],
    ids=["unknown-backend", "bad-keyword", "bad-port"],
)
def test_haproxy_refuses_a_broken_config(haproxy: str, old: str, new: str, tmp_path: Path) -> None:
    text = HAPROXY_CFG.read_text()
    assert old in text
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(text.replace(old, new, 1))
    assert haproxy_check(haproxy, broken).returncode != 0


def haproxy_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line.strip())
    return sections


def health_check_problems(text: str) -> list[str]:
    """Every backend checks GET /healthz and sends to servers of the compose services, on
    the ports their commands listen on."""
    problems: list[str] = []
    sections = haproxy_sections(text)
    defaults = " ".join(sections.get("defaults", []))
    ports = {"edge": "8000", "worklogs": "8001", "console": "8002"}
    backends = {k.split()[1]: v for k, v in sections.items() if k.startswith("backend ")}
    if set(backends) != set(ports):
        problems.append(f"backends: {sorted(backends)}")
    for name, lines in backends.items():
        if "option httpchk" not in lines or "http-check send meth GET uri /healthz" not in lines:
            problems.append(f"backend {name} does not check GET /healthz")
        servers = [line for line in lines if line.startswith(("server ", "server-template "))]
        for server in servers:
            address = server.split()[3 if server.startswith("server-template") else 2]
            if address != f"{name}:{ports.get(name)}":
                problems.append(f"backend {name} sends to {address}")
            if " check" not in f" {server}" and "check" not in defaults.split():
                problems.append(f"backend {name}: {server} is not health-checked")
    if "check" not in defaults.split():
        problems.append("default-server does not health-check")
    return problems


def test_every_backend_is_health_checked_on_healthz() -> None:
    assert health_check_problems(HAPROXY_CFG.read_text()) == []
    compose = compose_document()["services"]
    for name, port in (("edge", "8000"), ("worklogs", "8001"), ("console", "8002")):
        command = compose[name]["command"]
        assert command[command.index("--port") + 1] == port
    replicas = {n: compose[n]["deploy"]["replicas"] for n in ("edge", "worklogs")}
    text = HAPROXY_CFG.read_text()
    for name, count in replicas.items():
        assert re.search(rf"server-template {name} {count} {name}:", text)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "    http-check send meth GET uri /healthz\n    http-check expect status 200\n"
            "    server-template worklogs",
            "    server-template worklogs",
        ),
        ("edge 2 edge:8000", "edge 2 edge:9000"),
        ("resolvers docker check inter", "resolvers docker inter"),
    ],
    ids=["no-health-check", "wrong-port", "no-check"],
)
def test_the_health_check_check_reports_a_mutation(old: str, new: str) -> None:
    text = HAPROXY_CFG.read_text()
    assert old in text
    assert health_check_problems(text.replace(old, new, 1))


# -- PgBouncer ----------------------------------------------------------------------------


def test_pgbouncer_ini_parses_and_pools_transactions() -> None:
    parser = pgbouncer_config()
    assert parser["pgbouncer"]["pool_mode"] == "transaction"
    assert pgbouncer_problems(parser) == []
    assert parser["databases"]["tenancy"] == "host=postgres port=5432 dbname=tenancy"


@pytest.mark.parametrize(
    ("old", "new", "reported"),
    [
        ("pool_mode = transaction", "pool_mode = session", "pool_mode is session"),
        ("pool_mode = transaction\n", "", "pool_mode is session (default)"),
        ("auth_type = scram-sha-256", "auth_type = trust", "auth_type"),
        ("dbname=tenancy", "dbname=tenancy password=hunter2", "carries a password"),
    ],
    ids=["session", "default-session", "trust", "password"],
)
def test_the_pgbouncer_check_reports_a_mutation(old: str, new: str, reported: str) -> None:
    text = PGBOUNCER_INI.read_text()
    assert old in text
    problems = pgbouncer_problems(pgbouncer_config(text.replace(old, new, 1)))
    assert any(reported in p for p in problems), problems


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_pgbouncer(binary: str, ini_text: str) -> tuple[bool, str]:
    """Start PgBouncer on ``ini_text`` (paths and the listen address made local, as the
    postgres user: PgBouncer refuses root); whether it listened, and what it logged."""
    postgres = pwd.getpwnam("postgres")
    directory = Path(tempfile.mkdtemp(prefix="infra-pgbouncer-"))
    port = _free_port()
    userlist = directory / "userlist.txt"
    userlist.write_text('"tenancy_app" "not-a-real-password"\n')
    text = (
        ini_text.replace("/run/secrets/pgbouncer_userlist", str(userlist))
        .replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
        .replace("listen_port = 6432", f"listen_port = {port}")
        .replace("host=postgres", "host=127.0.0.1")
    )
    ini = directory / "pgbouncer.ini"
    ini.write_text(text)
    for path in (directory, userlist, ini):
        os.chown(path, postgres.pw_uid, postgres.pw_gid)
    process = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", binary, str(ini)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    listening = False
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    listening = True
                    break
            except OSError:
                time.sleep(0.05)
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        shutil.rmtree(directory, ignore_errors=True)
    return listening, output


@pytest.fixture(scope="module")
def pgbouncer() -> str:
    if os.geteuid() != 0:
        pytest.skip("starting PgBouncer as the postgres user needs root (runuser)")
    return ensure_tool("pgbouncer", "pgbouncer")


def test_pgbouncer_starts_on_the_config(pgbouncer: str) -> None:
    listening, output = run_pgbouncer(pgbouncer, PGBOUNCER_INI.read_text())
    assert listening, output
    assert "ERROR" not in output and "FATAL" not in output, output


def test_pgbouncer_refuses_a_broken_config(pgbouncer: str) -> None:
    text = PGBOUNCER_INI.read_text().replace("pool_mode = transaction", "pool_mode = sometimes")
    listening, output = run_pgbouncer(pgbouncer, text)
    assert not listening, output


# -- OPA ------------------------------------------------------------------------------------


def test_opa_pulls_the_bundle_from_a_configured_service() -> None:
    config = yaml.safe_load(OPA_CONFIG.read_text())
    bundle = config["bundles"]["tenancy"]
    assert bundle["service"] in config["services"]
    assert bundle["resource"] == "bundle.tar.gz"
    assert bundle["polling"]["min_delay_seconds"] <= bundle["polling"]["max_delay_seconds"]
    compose = compose_document()["services"]
    assert "bundles" in compose and config["services"]["bundles"]["url"] == "http://bundles:8080"
    assert "/srv/bundles/bundle.tar.gz" in compose["bundle"]["command"]


# -- secrets in any committed file ----------------------------------------------------------


def test_no_committed_deployment_file_holds_a_secret() -> None:
    files = scanned_files()
    assert COMPOSE_FILE in files and HAPROXY_CFG in files and PGBOUNCER_INI in files
    problems = [
        problem
        for path in files
        for problem in text_secret_problems(str(path.name), path.read_text(encoding="utf-8"))
    ]
    assert problems == []


@pytest.mark.parametrize(
    "leak",
    [
        "-----BEGIN PRIVATE KEY-----",
        "tenancy = host=postgres password=hunter2",
        '"tenancy_app" "hunter2"',
        "url: postgresql://tenancy_app:hunter2@pgbouncer:6432/tenancy",
        "TENANCY_AUDIT_KEY: " + "0123456789abcdef" * 4,
    ],
    ids=["private-key", "conninfo-password", "userlist", "url", "hex-key"],
)
def test_the_text_scan_reports_a_leak(leak: str) -> None:
    assert text_secret_problems("x", f"# a file\n{leak}\n")
