"""`tenancy probe`, as a process, against the FastAPI example served by uvicorn over the
demo's state (``main.app_from_env``): routes from its /openapi.json, no leak."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.tests.e2e.test_demo import free_port, stop, wait_ready
from tenancy.deployment import open_registry
from tenancy.identity import DevIssuer
from tenancy.settings import Settings
from tenancy_examples.demo_state import prepare

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]
ROLES = {"member": "worklogs:read worklogs:write", "viewer": "worklogs:read"}


def probe_toml(target: str, tokens: dict[tuple[str, str], str]) -> str:
    lines = [f'target = "{target}"', 'openapi = "/openapi.json"', 'exclude = ["/healthz"]', ""]
    for (tenant, role), token in tokens.items():
        lines += [
            "[[identities]]",
            f'name = "{tenant}-{role}"',
            f'tenant = "{tenant}"',
            f'token = {{ value = "{token}" }}',
            "",
        ]
    lines += [
        '[routes."POST /worklogs"]',
        'body = { description = "probe {canary}", minutes = 5, day = "2026-11-21", '
        'comment = "secret {canary}" }',
        "seed = true",
        'capture = { worklog_id = "id" }',
    ]
    return "\n".join(lines) + "\n"


def test_tenancy_probe_finds_no_leak_in_the_served_example(tmp_path: Path) -> None:
    data = tmp_path / "state"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TENANCY_DATA_DIR": str(data),
        "TENANCY_CONSISTENCY_CHECKS": "1",
    }
    env.pop("TENANCY_DATABASE_URL", None)
    settings = Settings.from_env(env)
    prepare(settings)  # the demo's tenants, their keys, the dev issuer (SQLite)
    tenants = {t.slug: t for t in open_registry(settings).list()}
    issuer = DevIssuer.load_or_create(data)
    tokens = {
        (slug, role): issuer.mint(
            tenant_id=tenants[slug].id,
            subject=f"probe-{slug}-{role}",
            audience=settings.audience,
            roles=[role],
            scopes=scopes.split(),
        )
        for slug in ("acme", "globex")
        for role, scopes in ROLES.items()
    }
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tenancy_examples.fastapi_worklogs.main:app_from_env",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    target = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, target, time.monotonic())
        config = tmp_path / "probe.toml"
        config.write_text(probe_toml(target, tokens))
        done = subprocess.run(
            [sys.executable, "-m", "tenancy.cli", "probe", "--config", str(config), "--out", "-"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop(server)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["leaked"] == 0 and report["summary"]["enforced"] > 50
    assert {r for r in report["routes"]} == {
        "GET /whoami",
        "GET /worklogs",
        "POST /worklogs",
        "GET /worklogs/{worklog_id}",
        "DELETE /worklogs/{worklog_id}",
    }
