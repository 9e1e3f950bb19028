"""A real PgBouncer in transaction pooling mode in front of the local PostgreSQL.

Debian's ``pgbouncer`` is installed with apt-get when missing (we run as root), as the
SoftHSM and Chromium helpers do; under ``CI=true`` a PgBouncer that cannot be had fails
the test. PgBouncer refuses to run as root, so it runs as the ``postgres`` user, with its
configuration in a directory that user owns, on a free port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.postgres import in_ci

PGBOUNCER = "/usr/sbin/pgbouncer"


def ensure_pgbouncer() -> None:
    """Install Debian's pgbouncer when missing; fail (CI) or skip when that did not work."""
    if Path(PGBOUNCER).is_file():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "pgbouncer"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(install, capture_output=True)
    if Path(PGBOUNCER).is_file():
        return
    message = (
        f"PgBouncer is not installed: {PGBOUNCER} is missing (Debian: apt-get install pgbouncer)"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_pgbouncer(
    database: str, users: Sequence[str], *, pool_size: int = 4, max_client_conn: int = 400
) -> Iterator[int]:
    """PgBouncer (``pool_mode = transaction``) in front of ``database`` on
    127.0.0.1:5432 for ``users`` (trust, as the local server); yields its port."""
    ensure_pgbouncer()
    postgres = pwd.getpwnam("postgres")
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = _free_port()
    (directory / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{database} = host=127.0.0.1 port=5432 dbname={database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir =\nauth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = {max_client_conn}\n"
        # A client waiting this long for a server connection gets an error, not a hang.
        "query_wait_timeout = 20\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
    )
    for path in (directory, *directory.iterdir()):
        os.chown(path, postgres.pw_uid, postgres.pw_gid)
    # Its output goes to a file: a pipe nobody reads fills up (it logs every login), and
    # PgBouncer then blocks on the write with every client waiting on it.
    with open(directory / "pgbouncer.out", "wb") as output:
        process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", PGBOUNCER, str(directory / "pgbouncer.ini")],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    said = "".join(
                        path.read_text(errors="replace")
                        for path in (directory / "pgbouncer.out", directory / "pgbouncer.log")
                        if path.exists()
                    )
                    pytest.fail(f"PgBouncer did not start: {said}")
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
