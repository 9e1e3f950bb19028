"""Demonstrates the two-service deployment on loopback: edge in front, worklogs behind.

``tenancy demo`` prepares the shared state, starts the worklogs backend as its own
process on a loopback port (it accepts only context tokens minted by the edge), waits
until it answers, then serves the edge on the public port. Stopping the demo stops both;
the backend also exits by itself if the demo process disappears.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx

from tenancy.settings import Settings

READY_TIMEOUT = 30.0


def run(settings: Settings, *, host: str, port: int, backend_port: int, console_port: int) -> int:
    """Serve the demo until interrupted; returns the exit status."""
    import uvicorn

    from tenancy_examples.demo_state import prepare
    from tenancy_examples.edge.main import build_edge

    registry = prepare(settings)
    backend_url = f"http://127.0.0.1:{backend_port}"
    console_url = f"http://127.0.0.1:{console_port}"
    backend = _spawn("worklogs", backend_port, settings)
    console = _spawn("console", console_port, settings)
    try:
        edge = build_edge(settings, worklogs_url=backend_url)
        _wait_ready(backend, backend_url)
        _wait_ready(console, console_url)
        base = f"http://{host}:{port}"
        data = settings.data_dir
        print(
            f"tenancy demo: edge on {base} (region {settings.region}, data in {data})\n"
            f"  worklogs backend on {backend_url}: context tokens from the edge only\n"
            f"  admin console on {console_url}: sign in with an admin token "
            f"(dev-token --tenant acme --sub ann --roles admin --mfa)\n"
            f"tenants: {', '.join(t.slug for t in registry.list())}\n\n"
            "try it:\n"
            f"  TOKEN=$(.venv/bin/tenancy dev-token --tenant acme --sub alice --data-dir {data})\n"
            f'  curl -s -H "Authorization: Bearer $TOKEN" '
            "-H 'content-type: application/json' \\\n"
            f'       -d \'{{"description":"design review","minutes":45,'
            f'"day":"2026-11-22"}}\' {base}/worklogs\n'
            f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/worklogs\n'
            f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'X-Tenant-ID: globex' "
            f"{base}/worklogs   # still acme\n"
            f'  curl -s -H "Authorization: Bearer $TOKEN" {backend_url}/worklogs'
            f"   # 401: the backend never takes a user's token\n",
            flush=True,
        )
        uvicorn.run(edge, host=host, port=port, log_level="warning")
    finally:
        for child in (backend, console):
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0


def _spawn(service: str, port: int, settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603  (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "tenancy.cli",
            "serve",
            service,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(settings.data_dir),
            "--parent-pid",
            str(os.getpid()),
        ],
        env={**os.environ, "TENANCY_REGION": settings.region},
    )


def serve(service: str, settings: Settings, *, host: str, port: int, parent_pid: int | None) -> int:
    """A demo service process (worklogs or console); exits when the demo process is gone."""
    import uvicorn

    if service == "worklogs":
        from tenancy_examples.worklogs.main import build_worklogs

        app = build_worklogs(settings)
    else:
        from tenancy_examples.console.main import build_console

        app = build_console(settings)
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worklogs backend exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the worklogs backend did not answer on {url}")


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1)
    os._exit(0)
