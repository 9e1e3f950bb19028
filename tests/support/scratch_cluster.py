"""A throwaway PostgreSQL 15 cluster that a test owns, so it may restart it.

The local server (15/main on 5432) is shared with every other test: nothing here touches
it. ``scratch_cluster()`` creates a new cluster with Debian's ``pg_createcluster`` on a
free port (trust authentication, listening on 127.0.0.1; its processes run as the
``postgres`` user as Debian's tools arrange), starts it, yields a handle with its admin
URL and ``restart()``, and always drops it (``pg_dropcluster --stop``) at the end. Under
``CI=true`` a cluster that cannot be had fails the test; elsewhere it skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.postgres import in_ci

VERSION = "15"
TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class ScratchCluster:
    name: str
    port: int
    version: str = VERSION

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def config_dir(self) -> Path:
        return Path(f"/etc/postgresql/{self.version}/{self.name}")

    @property
    def log_file(self) -> Path:
        return Path(f"/var/log/postgresql/postgresql-{self.version}-{self.name}.log")

    def ctl(self, action: str, *options: str) -> subprocess.CompletedProcess[str]:
        return _run(
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            self.version,
            self.name,
            action,
            *options,
        )

    def restart(self) -> float:
        """``pg_ctlcluster ... restart`` in fast mode (open sessions are terminated);
        returns the seconds it took. Raises when the cluster did not come back."""
        started = time.monotonic()
        done = self.ctl("restart", "-m", "fast")
        if done.returncode != 0:
            raise RuntimeError(
                f"restarting cluster {self.version}/{self.name} failed: "
                f"{done.stdout}{done.stderr}\n{self.log_tail()}"
            )
        self.wait_accepting()
        return time.monotonic() - started

    def wait_accepting(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            ready = _run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), timeout=10)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cluster {self.version}/{self.name} is not accepting connections: "
                    f"{ready.stdout}{ready.stderr}\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"


@contextmanager
def scratch_cluster() -> Iterator[ScratchCluster]:
    """A new PostgreSQL 15 cluster on a free port, started; dropped at the end."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(
            f"PostgreSQL cluster tools are missing ({', '.join(missing)}); "
            "Debian: apt-get install postgresql-common postgresql-15"
        )
    cluster = ScratchCluster(f"tenancy_{uuid.uuid4().hex[:10]}", _free_port())
    created = _run(
        "pg_createcluster",
        cluster.version,
        cluster.name,
        "--port",
        str(cluster.port),
        "--start-conf",
        "manual",
        "--",
        "--auth=trust",
    )
    try:
        if created.returncode != 0:
            _unavailable(
                f"could not create PostgreSQL cluster {cluster.version}/{cluster.name}: "
                f"{created.stdout}{created.stderr}"
            )
        # Only the loopback address (pg_createcluster's -o quoting does not take addresses).
        (cluster.config_dir / "conf.d").mkdir(exist_ok=True)
        (cluster.config_dir / "conf.d" / "scratch.conf").write_text(
            "listen_addresses = '127.0.0.1'\n"
        )
        started = cluster.ctl("start")
        if started.returncode != 0:
            _unavailable(
                f"could not start PostgreSQL cluster {cluster.version}/{cluster.name}: "
                f"{started.stdout}{started.stderr}\n{cluster.log_tail()}"
            )
        cluster.wait_accepting()
        yield cluster
    finally:
        # Dropped whatever happened (a half-created cluster too); --stop stops it first.
        _run("pg_dropcluster", "--stop", cluster.version, cluster.name)
