"""Shared plumbing of the HTTP benchmarks (``edge.py``, ``propagation.py``).

Both scripts compare variants of one route served by uvicorn on CPU ``SERVER_CPU`` while
``wrk --latency`` loads it from CPU ``LOAD_CPU``, alternating variants round by round and
reporting per-variant medians. Everything here is that method and nothing specific to
what is measured: finding wrk, ports, spawning pinned servers (the scripts re-invoke
themselves with ``--serve``), waiting for them, the state directory, running and parsing
wrk, the alternation, the medians, and the shared options, JSON fields and table columns,
so that the two scripts measure and report the same way.

Not a package: the scripts run as files (``.venv/bin/python bench/edge.py``), so their
directory, ``bench/``, is first on ``sys.path`` and they ``import harness``; so do the
``--serve`` subprocesses, which run the same file.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp

HOST = "127.0.0.1"
SERVER_CPU = 0  # every server under test; wrk never shares it
LOAD_CPU = 1  # wrk
HEALTH_PATH = "/healthz"
METRICS = ("rps", "p50_ms", "p99_ms")
TABLE_HEADER = f"{'variant':10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"

Server = subprocess.Popen[bytes]


# -- CPUs -----------------------------------------------------------------------------


def require_cpus(prog: str, why: str) -> None:
    """Exit unless this process may use both CPUs: without them, pinning means nothing.

    ``why`` ends the message, e.g. ``"server and load generator are pinned apart"``.
    """
    if not {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0):
        sys.exit(f"{prog}: needs CPUs {SERVER_CPU} and {LOAD_CPU} ({why})")


@contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Run the block on one CPU, then restore this process's affinity.

    For in-process microbenchmarks: the scheduler would otherwise move the process
    between CPUs mid-batch, and the servers' CPU is the one whose cost we quote.
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def taskset(cpu: int, cmd: Sequence[str]) -> list[str]:
    """``cmd`` prefixed to run on ``cpu`` only (``taskset``, so it holds for children)."""
    return ["taskset", "-c", str(cpu), *cmd]


# -- servers --------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks; a tiny race is fine)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def self_command(script: str, *args: str) -> list[str]:
    """The command that runs ``script`` (pass ``__file__``) again in this interpreter.

    Servers are the benchmark file itself with ``--serve``, so that the code measured
    and the code that builds it live in one place and share this virtualenv.
    """
    return [sys.executable, str(Path(script).resolve()), *args]


def spawn(cmd: Sequence[str], cpu: int = SERVER_CPU) -> Server:
    """Start ``cmd`` pinned to ``cpu``; stdout and stderr stay on the terminal."""
    return subprocess.Popen(taskset(cpu, cmd))


def serve(app: ASGIApp, port: int) -> None:
    """Serve ``app`` as every variant is served: uvicorn, uvloop + httptools, one worker.

    Logging is down to warnings and access logs are off, so that the server spends its
    CPU on requests, not on writing lines about them.
    """
    import uvicorn  # the driver side never needs it

    uvicorn.run(
        app,
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        workers=1,
    )


def http_get(port: int, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One ``GET`` on loopback with a fresh connection: status and body.

    For readiness and sanity checks only (a new connection each time, no keep-alive).
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token``; no header at all for ``None``."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def wait_ready(proc: Server, port: int, path: str = HEALTH_PATH, timeout: float = 20.0) -> None:
    """Poll ``path`` until it answers 200; fail early if the server exits.

    Measuring a server that is still importing would count its start-up as slowness.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {proc.returncode}")
        try:
            if http_get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s")


def stop(servers: Iterable[Server]) -> None:
    """Terminate all servers, then reap each, killing any that ignores SIGTERM for 5 s."""
    servers = list(servers)
    for proc in servers:
        proc.terminate()
    for proc in servers:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def running() -> Iterator[list[Server]]:
    """A list to append spawned servers to; all of them are stopped when the block ends.

    Even when a sanity check or wrk fails, so that no server keeps a pinned CPU busy.
    """
    servers: list[Server] = []
    try:
        yield servers
    finally:
        stop(servers)


@contextmanager
def state_dir(given: Path | None) -> Iterator[Path]:
    """``given`` (``--data-dir``), or a throw-away directory removed when the block ends."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmp:
        yield Path(tmp)


# -- wrk ------------------------------------------------------------------------------


def ensure_wrk(prog: str) -> str:
    """The path of ``wrk``, installing it with apt-get when root; exit if there is none."""
    if found := shutil.which("wrk"):
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(install, capture_output=True)
        if found := shutil.which("wrk"):
            return found
    sys.exit(f"{prog}: wrk is not installed (Debian: apt-get install wrk); cannot run")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run of one variant (field names are the scripts' JSON keys)."""

    variant: str
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Load:
    """How every variant is loaded: the options ``add_load_options`` defines."""

    duration: int
    warmup: int
    rounds: int
    connections: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Load:
        """The load the command line asked for."""
        return cls(args.duration, args.warmup, args.rounds, args.connections)

    def describe(self, path: str) -> dict[str, object]:
        """The JSON fields that say how the results were obtained (first in the output)."""
        return {
            "path": path,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "rounds": self.rounds,
            "connections": self.connections,
        }


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(output: str, pct: str) -> float:
    match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {pct}% latency line in wrk output:\n{output}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(variant: str, output: str) -> WrkResult:
    """Requests/s, p50 and p99 of ``wrk --latency`` output.

    Any non-2xx response voids the run (an error page is cheaper than the real path, so
    it would flatter the variant); socket errors only warn, on stderr.
    """
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if bad:
        raise RuntimeError(f"{variant}: {bad.group(1)} non-2xx responses; not a valid run")
    if errors := re.search(r"Socket errors:.*", output):
        print(f"warning: {variant}: {errors.group(0)}", file=sys.stderr)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{output}")
    return WrkResult(
        variant, float(rps.group(1)), _latency_ms(output, "50"), _latency_ms(output, "99")
    )


def run_wrk(
    wrk: str,
    variant: str,
    port: int,
    path: str,
    *,
    seconds: int,
    connections: int,
    headers: Mapping[str, str] | None = None,
    cpu: int = LOAD_CPU,
) -> WrkResult:
    """One ``wrk --latency`` run (one thread, pinned to ``cpu``) against loopback ``port``.

    The same headers go to every variant, so that requests are the same size even where
    a variant ignores them.
    """
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(f"http://{HOST}:{port}{path}")
    output = subprocess.run(taskset(cpu, cmd), capture_output=True, text=True, check=True).stdout
    return parse_wrk(variant, output)


def alternate(
    wrk: str,
    ports: Mapping[str, int],
    path: str,
    load: Load,
    *,
    headers: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[WrkResult]:
    """``load.rounds`` rounds over the variants (``ports``' keys, in order): all results.

    Variants alternate (a, b, a, b, ...) so that drift in the machine's speed hits them
    alike; each measured run follows its own warm-up run, which is not kept. With
    ``progress``, each result is printed on stderr as it comes.
    """
    runs: list[WrkResult] = []
    for round_no in range(load.rounds):
        for variant, port in ports.items():
            if load.warmup > 0:
                run_wrk(
                    wrk,
                    variant,
                    port,
                    path,
                    seconds=load.warmup,
                    connections=load.connections,
                    headers=headers,
                )
            r = run_wrk(
                wrk,
                variant,
                port,
                path,
                seconds=load.duration,
                connections=load.connections,
                headers=headers,
            )
            runs.append(r)
            if progress:
                print(
                    f"  round {round_no + 1} {variant:8} {r.rps:9.0f} req/s "
                    f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms",
                    file=sys.stderr,
                )
    return runs


def medians(runs: Iterable[WrkResult], variants: Iterable[str]) -> dict[str, dict[str, float]]:
    """Per variant, the median of each metric over its rounds (one slow round is noise)."""
    runs = list(runs)
    return {
        v: {
            key: statistics.median(getattr(r, key) for r in runs if r.variant == v)
            for key in METRICS
        }
        for v in variants
    }


def table_row(variant: str, m: Mapping[str, float]) -> str:
    """A row under ``TABLE_HEADER`` for one variant's medians."""
    return f"{variant:10}{m['rps']:>10.0f}{m['p50_ms']:>10.3f}{m['p99_ms']:>10.3f}"


# -- options --------------------------------------------------------------------------


def add_options(
    parser: argparse.ArgumentParser, servers: Sequence[str], *, rounds: int, rounds_help: str
) -> None:
    """The options both scripts take, in the order ``--help`` lists them.

    ``--serve`` and ``--port`` are hidden: only the script's re-invocation of itself
    passes them. The script adds its own options, then ``--json``, after these.
    """
    parser.add_argument("--serve", choices=servers, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help="state directory (default: a temp dir)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
