"""A real headless browser and in-process servers for end-to-end tests of web pages.

``ensure_chromium`` installs Debian's ``chromium`` with apt-get when it is missing (we run
as root, as ``tests/support/softhsm.py`` installs softhsm2); still missing, or Playwright
not installed, it fails under ``CI=true`` and skips otherwise. Playwright drives that
Chromium through ``executable_path``: ``playwright install`` (which downloads its own
browser builds) is never run.

``serve`` runs an ASGI app with uvicorn in a background thread on a free loopback port
and stops it on exit. ``descendants`` and ``still_running`` let a test check that the
browser and Playwright's driver are gone when it ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import in_ci

CHROMIUM = os.environ.get("TENANCY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")


def ensure_chromium() -> str:
    """The path of Debian's Chromium, installing it when missing."""
    if not Path(CHROMIUM).is_file() and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(install, capture_output=True, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
            subprocess.run(install, capture_output=True, env=env)
    if not Path(CHROMIUM).is_file():
        _unavailable(
            f"Chromium is not installed: {CHROMIUM} is missing (Debian: apt-get install chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright)")
    return CHROMIUM


@contextmanager
def chromium_page(*, viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A Playwright page in a fresh headless Debian Chromium; everything closes on exit."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
            context.close()
        finally:
            browser.close()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on ``http://127.0.0.1:<free port>`` until the block ends."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", ws="none", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn-{port}"
    )
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the server on port {port} did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), f"the server on port {port} did not stop"


def _parents() -> dict[int, int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":  # zombies are gone already, but for their exit status
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def descendants() -> set[int]:
    """Ids of this process's living descendants: Playwright's driver, the browser's
    processes under it (Linux ``/proc``)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def still_running(pids: set[int], *, timeout: float = 10) -> set[int]:
    """Wait until none of ``pids`` lives (zombies count as gone); returns the leftovers."""
    deadline = time.monotonic() + timeout
    while (left := pids & set(_parents())) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
