"""One page's run: its working directory, shell state, servers, database and namespace.

A page is read like a reader follows it: in one terminal, from a checkout, top to bottom.
Its blocks run in order in a fresh temporary directory that holds links to the
checkout's top-level entries (``.venv``, ``examples``, ``infra``, ``bench``, the
``Makefile``...), so every relative path in the docs resolves as in a checkout while every
file a command writes (``./.tenancy``, ``probe.json``, ``evidence/``) is new.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.markdown import ROOT, Block, Page

VENV_BIN = ROOT / ".venv" / "bin"
DEMO_PORTS = (8000, 8001, 8002)
ADMIN_URL = os.environ.get(
    "TENANCY_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Commands that start a long-running server: run in the background, waited for, stopped
# at the end of the page.
SERVER = re.compile(
    r"^\s*(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:make\s+demo|(?:\S*/)?tenancy\s+demo)(?:\s|$)"
)
PAGE_VARIABLES = ("PGHOST", "PGDATABASE", "OWNER_DATABASE_URL", "APP_DATABASE_URL")
LEFT_OUT = {".git", "site", ".tenancy", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
PRELUDE = """\
set -eo pipefail
if [ -f "$DOCS_STATE" ]; then source "$DOCS_STATE"; fi
# Make's install step already ran (it is how this venv exists): never re-run it from here.
make() { command make -o .venv/.installed "$@"; }
docs_serve() {
  for port in %(ports)s; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "docs-test: port $port is already in use: stop the other demo first" >&2
      return 97
    fi
  done
  setsid bash -c "$1" >>"$DOCS_SERVER_LOG" 2>&1 </dev/null &
  echo $! >>"$DOCS_SERVER_PIDS"
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null http://127.0.0.1:8000/healthz; then return 0; fi
    if ! kill -0 $! 2>/dev/null; then
      echo "docs-test: the server exited; its output:" >&2; cat "$DOCS_SERVER_LOG" >&2
      return 98
    fi
    sleep 0.1
  done
  echo "docs-test: no answer on /healthz after 60 s; output:" >&2; cat "$DOCS_SERVER_LOG" >&2
  return 99
}
"""
EPILOGUE = '\nexport -p >"$DOCS_STATE"\n'


@dataclass
class Outcome:
    ok: bool
    message: str = ""


@dataclass
class PageRun:
    page: Page
    directory: Path
    env: dict[str, str]
    namespace: types.ModuleType
    results: dict[int, Outcome] = field(default_factory=dict)
    database: str | None = None
    closed: bool = False
    leaks: list[str] = field(default_factory=list)
    _cleanups: list[contextlib.ExitStack] = field(default_factory=list)

    # -- set-up and tear-down ----------------------------------------------------------

    @classmethod
    def open(cls, page: Page) -> PageRun:
        directory = Path(tempfile.mkdtemp(prefix="docs-" + re.sub(r"\W", "-", page.path) + "-"))
        for entry in ROOT.iterdir():
            if entry.name not in LEFT_OUT and not entry.name.startswith(".tenancy"):
                (directory / entry.name).symlink_to(entry)
        env = reader_environment()
        env.update(
            DOCS_STATE=str(directory / ".docs-state.sh"),
            DOCS_SERVER_LOG=str(directory / ".docs-server.log"),
            DOCS_SERVER_PIDS=str(directory / ".docs-server.pids"),
        )
        name = "docs_page_" + re.sub(r"\W", "_", page.path)
        module = types.ModuleType(name)
        sys.modules[name] = module
        return cls(page, directory, env, module)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_servers()
        for stack in reversed(self._cleanups):
            stack.close()
        sys.modules.pop(self.namespace.__name__, None)
        self.namespace.__dict__.clear()
        # What the page's code left open (a client, a file) warns when collected: record
        # it against this page rather than whichever test the collector happens to run in.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        self.leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        if os.environ.get("DOCS_TEST_KEEP"):
            print(f"docs-test: kept {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def stop_servers(self) -> None:
        pids = Path(self.env["DOCS_SERVER_PIDS"])
        if not pids.exists():
            return
        for pid in [int(p) for p in pids.read_text().split()]:
            for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and _group_alive(pid):
                    time.sleep(0.1)
                if not _group_alive(pid):
                    break
        pids.unlink()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_listening(p) for p in DEMO_PORTS):
            time.sleep(0.1)

    def server_log_tail(self, lines: int = 30) -> str:
        """The end of what the page's servers printed, for failure messages."""
        log = Path(self.env["DOCS_SERVER_LOG"])
        if not log.exists():
            return ""
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        return "\n--- the page's server output (last lines)\n" + "\n".join(tail)

    # -- what pages and blocks need ----------------------------------------------------

    def need_postgres(self) -> None:
        """A scratch database on the local server, named in the environment the way the
        deploy page asks readers to name theirs (``OWNER_DATABASE_URL``,
        ``APP_DATABASE_URL``), and ``PGHOST``/``PGDATABASE`` for ``psql``."""
        if self.database is not None:
            return
        stack = contextlib.ExitStack()
        self._cleanups.append(stack)
        name = f"tenancy_docs_{uuid.uuid4().hex[:10]}"
        existed = _roles_present()
        # Callbacks run last-in first-out: the database (which holds the roles' grants)
        # is dropped before the roles the page's commands created.
        for role in ("tenancy_app", "tenancy_owner"):
            if role not in existed:
                stack.callback(_admin, f'DROP ROLE IF EXISTS "{role}"')
        _admin(f'CREATE DATABASE "{name}"')
        stack.callback(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        base = ADMIN_URL.rsplit("/", 1)[0]
        # The roles and schema grants the deploy page sets up (idempotent: the page's own
        # commands run them again).
        _admin((ROOT / "infra" / "sql" / "roles.sql").read_text())
        _admin(
            "GRANT CREATE, USAGE ON SCHEMA public TO tenancy_owner; "
            "GRANT USAGE ON SCHEMA public TO tenancy_app",
            url=f"{base}/{name}",
        )
        host = base.split("@", 1)[1].split(":")[0]
        self.database = name
        self.env.update(
            PGHOST=host,
            PGDATABASE=name,
            OWNER_DATABASE_URL=base.replace("postgres@", "tenancy_owner@", 1) + f"/{name}",
            APP_DATABASE_URL=base.replace("postgres@", "tenancy_app@", 1) + f"/{name}",
        )

    def migrate_postgres(self) -> None:
        """What the deploy page does, for pages that start from a migrated database."""
        if self.database is not None:
            return
        self.need_postgres()
        self.shell(
            '.venv/bin/tenancy db migrate --url "$OWNER_DATABASE_URL" --app-role tenancy_app\n',
            where="postgres set-up",
        )

    def start_demo(self) -> None:
        """``tenancy demo`` in the page's directory, as the prose asks the reader to run it
        in another terminal (on the page's database when the page uses PostgreSQL)."""
        if Path(self.env["DOCS_SERVER_PIDS"]).exists():
            return
        line = ".venv/bin/tenancy demo"
        if self.database is not None:
            line = f'TENANCY_DATABASE_URL="$APP_DATABASE_URL" {line}'
        self.shell(f"docs_serve {shell_quote(line)}\n", where="demo set-up")

    # -- running -----------------------------------------------------------------------

    def shell(
        self, script: str, *, where: str, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with the page's shell state; raise with its output on failure."""
        done = self.run_shell(script, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(
                f"{where}: exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n"
                f"{done.stderr}{self.server_log_tail()}"
            )
        return done

    def run_shell(self, script: str, *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        full = PRELUDE % {"ports": " ".join(map(str, DEMO_PORTS))} + script + EPILOGUE
        return subprocess.run(
            ["bash", "-c", full],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextlib.contextmanager
    def python_environment(self) -> Iterator[None]:
        """The page's directory and variables (its database's, and what its shell blocks
        exported so far), for its Python blocks."""
        variables = {k: v for k, v in self.env.items() if k in PAGE_VARIABLES}
        state = Path(self.env["DOCS_STATE"])
        if state.exists():
            done = subprocess.run(
                ["bash", "-c", 'source "$DOCS_STATE"; env -0'],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            )
            exported = dict(i.split("=", 1) for i in done.stdout.split("\0") if "=" in i)
            variables |= {
                k: v
                for k, v in exported.items()
                if self.env.get(k) != v and not k.startswith(("DOCS_", "_", "SHLVL", "OLDPWD"))
            }
        saved_env = dict(os.environ)
        saved_cwd = Path.cwd()
        os.environ.update(variables)
        os.chdir(self.directory)
        try:
            yield
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def serverize(script: str) -> str:
    """Each line that starts a server becomes ``docs_serve '<line>'`` (background, wait)."""
    out = []
    for line in script.split("\n"):
        if SERVER.match(line):
            command = line.split("#", 1)[0].rstrip()
            out.append(f"docs_serve {shell_quote(command)}")
        else:
            out.append(line)
    return "\n".join(out)


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def reader_environment() -> dict[str, str]:
    """A new user's shell: no tenancy settings, and the venv not on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANCY_", "PG"))}
    venv = str(VENV_BIN)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != Path(venv)
    )
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _admin(statement: str, *, url: str = ADMIN_URL) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def _roles_present() -> set[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(ADMIN_URL)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT rolname FROM pg_roles WHERE rolname IN ('tenancy_owner', 'tenancy_app')"
                )
            )
            return set(rows.scalars())
    finally:
        engine.dispose()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def block_needs(page: Page, block: Block) -> set[str]:
    return set(page.needs) | {w for w in ("postgres", "demo") if w in block.directives}
