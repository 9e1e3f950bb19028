"""Replicas behind HAProxy: req/s with 1, 2 and 4 edge + worklogs processes, and how fast
a suspension by the CLI reaches every edge replica.

What it measures, in one run, on the local PostgreSQL (a scratch database, the services
as the application role: NOSUPERUSER NOBYPASSRLS) with the context-token replay guard in
the local Redis, as ``examples/tests/e2e/test_replicas.py`` runs them:

1. Scaling: four edge and four worklogs processes (``infra/compose/launch.py``, as a
   deployment runs them) behind one HAProxy (round robin, health-checked). For N in 1, 2,
   4, HAProxy's runtime API puts all but N servers of each tier into maintenance, and an
   aiohttp client in this process sends authenticated ``GET /worklogs`` (acme and globex
   alternately; ``--writes`` mixes in ``POST /worklogs``) through HAProxy at fixed
   concurrency for ``--seconds`` after a ``--warmup``. Each N reports req/s, p50/p99
   latency, errors and the throughput ratio to N=1; rounds alternate the order of N
   (1, 2, 4, then 4, 2, 1, ...) and each N reports the median of its rounds. The same
   processes serve every N, so only the number in rotation changes.
2. Propagation: with N=2 in rotation, ``tenancy tenants suspend globex --reason bench``;
   from the CLI's exit, each of the two edge replicas (addressed directly, not through
   HAProxy) is polled with globex's token until it answers 403 ``tenant-suspended``; the
   time until the last one refuses is one sample (target: under 100 ms). Between samples
   globex is activated again and both replicas are seen serving it (its cache warm).

Why: a deployment runs several replicas per service; this puts on record how throughput
scales with them on this machine, and its ceiling: the machine has few cores
(``os.cpu_count()`` is printed), and the client, HAProxy, PostgreSQL and Redis share them,
so past the core count more processes cannot add throughput.

Cleanup: every process, the scratch database and the role are removed at the end, on an
error and on Ctrl-C (SIGINT) or SIGTERM. A script, not a test: nothing asserts beyond the
sanity checks before measuring.

    .venv/bin/python bench/replicas.py [--seconds 8] [--warmup 2] [--rounds 3]
        [--concurrency 32] [--writes 0.0] [--changes 7] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "infra" / "compose" / "launch.py"
ADMIN_URL = os.environ.get(
    "TENANCY_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "127.0.0.1"
SIZES = (1, 2, 4)
PROPAGATION_N = 2
TARGET_MS = 100.0
TENANTS = ("acme", "globex")
SUSPENDED = "globex"
SEED_PER_TENANT = 20
ENTRY = {"description": "replica bench", "minutes": 30, "day": "2026-11-21"}
START_TIMEOUT = 60.0
PROG = Path(__file__).name
BACKENDS = {"edge": "edges", "worklogs": "worklogs"}  # tier -> HAProxy backend


# -- database -------------------------------------------------------------------------


@contextmanager
def scratch_database() -> Iterator[tuple[str, str]]:
    """A migrated worklogs database and a fresh app role: (owner URL, app-role URL)."""
    from tenancy_examples.worklogs.migrate import upgrade

    suffix = uuid.uuid4().hex[:8]
    name, role = f"tenancy_bench_replicas_{suffix}", f"tenancy_bench_replicas_app_{suffix}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    owner_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        upgrade(owner_url, app_role=role)
        yield owner_url, owner_url.replace("postgres@", f"{role}@", 1)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


# -- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_all(services: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    pending = dict(services)
    deadline = time.monotonic() + START_TIMEOUT
    while pending and time.monotonic() < deadline:
        for url, (process, log) in list(pending.items()):
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited:\n{log.read_text()[-3000:]}")
            if healthy(url):
                del pending[url]
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"did not answer /healthz: {sorted(pending)}")


def log_file(path: Path, stack: ExitStack) -> int:
    """A descriptor for a process's output, closed when ``stack`` closes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    stack.callback(os.close, fd)
    return fd


@dataclass
class Topology:
    users: str  # HAProxy's frontend for users (edges)
    edges: list[str]  # the edge processes, addressed directly
    socket_path: Path  # HAProxy's admin socket
    env: dict[str, str]

    def tenancy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tenancy.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def haproxy(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.socket_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def rotate(self, n: int) -> None:
        """Exactly the first ``n`` servers of each tier in rotation; wait until they are."""
        for tier in BACKENDS:
            for i in range(max(SIZES)):
                state = "ready" if i < n else "maint"
                answer = self.haproxy(f"set server {BACKENDS[tier]}/{tier}{i} state {state}")
                if answer.strip():
                    raise RuntimeError(f"HAProxy: {answer.strip()}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = self.stats()
            up = {k for k, row in stats.items() if row["status"] == "UP"}
            want = {f"{BACKENDS[t]}/{t}{i}" for t in BACKENDS for i in range(n)}
            if up == want:
                return
            time.sleep(0.05)
        raise RuntimeError(f"HAProxy did not put {n} servers per tier in rotation: {up}")

    def stats(self) -> dict[str, dict[str, str]]:
        """Per server (``backend/server``): HAProxy's ``show stat`` row."""
        lines = self.haproxy("show stat").strip().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row["svname"] not in ("FRONTEND", "BACKEND"):
                rows[f"{row['pxname']}/{row['svname']}"] = row
        return rows

    def served(self) -> dict[str, int]:
        """Requests (HTTP responses) each server has answered so far."""
        return {k: int(row.get("hrsp_2xx") or 0) for k, row in self.stats().items()}


def haproxy_config(users: int, services: int, edges: list[int], backends: list[int]) -> str:
    def servers(tier: str, ports: list[int]) -> str:
        return "".join(
            f"  server {tier}{i} {HOST}:{p} check inter 500 rise 1\n" for i, p in enumerate(ports)
        )

    return (
        "global\n  maxconn 4000\n  stats socket {socket} level admin\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n"
        "  timeout server 30s\n"
        f"frontend users\n  bind {HOST}:{users}\n  default_backend edges\n"
        f"frontend services\n  bind {HOST}:{services}\n  default_backend worklogs\n"
        "backend edges\n  balance roundrobin\n  option httpchk GET /healthz\n"
        + servers("edge", edges)
        + "backend worklogs\n  balance roundrobin\n  option httpchk GET /healthz\n"
        + servers("worklogs", backends)
    )


@contextmanager
def topology(directory: Path, app_url: str, stack: ExitStack) -> Iterator[Topology]:
    from tests.infra.tools import ensure_tool  # installs the Debian package where allowed

    haproxy_binary = ensure_tool("haproxy", "haproxy")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TENANCY_")},
        "PYTHONUNBUFFERED": "1",
        "TENANCY_DATA_DIR": str(directory / "state"),
        "TENANCY_DATABASE_URL": app_url,
        "TENANCY_REPLAY_GUARD": REDIS_URL,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    prepared = subprocess.run(
        [sys.executable, str(LAUNCH), "prepare"], env=env, capture_output=True, text=True
    )
    if prepared.returncode != 0:
        raise RuntimeError(f"launch.py prepare failed:\n{prepared.stdout}{prepared.stderr}")

    def start(service: str, port: int, *extra: str) -> tuple[str, subprocess.Popen[bytes], Path]:
        log = directory / f"{service}-{port}.log"
        output = log_file(log, stack)
        process = subprocess.Popen(
            [sys.executable, str(LAUNCH), service, "--host", HOST, "--port", str(port), *extra],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, process)
        return f"http://{HOST}:{port}", process, log

    count = max(SIZES)
    users, services = free_port(), free_port()
    edge_ports = [free_port() for _ in range(count)]
    backend_ports = [free_port() for _ in range(count)]
    socket_path = directory / "haproxy.sock"
    config = directory / "haproxy.cfg"
    config.write_text(
        haproxy_config(users, services, edge_ports, backend_ports).replace(
            "{socket}", str(socket_path)
        )
    )
    started = [start("worklogs", p) for p in backend_ports]
    wait_all({url: (process, log) for url, process, log in started})
    haproxy_log = log_file(directory / "haproxy.log", stack)
    haproxy = subprocess.Popen(
        [haproxy_binary, "-db", "-f", str(config)], stdout=haproxy_log, stderr=subprocess.STDOUT
    )
    stack.callback(stop, haproxy)
    worklogs = f"http://{HOST}:{services}"
    started = [start("edge", p, "--worklogs-url", worklogs) for p in edge_ports]
    wait_all({url: (process, log) for url, process, log in started})
    deadline = time.monotonic() + 10
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield Topology(f"http://{HOST}:{users}", [url for url, _, _ in started], socket_path, env)


# -- load -----------------------------------------------------------------------------


@dataclass
class Run:
    n: int
    round: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    per_replica: dict[str, int]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    url: str, tokens: list[str], concurrency: int, warmup: float, seconds: float, writes: float
) -> tuple[list[float], int, float]:
    """(latencies in s, errors, measured seconds) of requests completed in the window."""
    latencies: list[float] = []
    errors = 0
    measuring = stopping = False
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:

        async def worker(i: int) -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            rng = random.Random(i)
            while not stopping:
                write = writes > 0 and rng.random() < writes
                began = time.perf_counter()
                try:
                    if write:
                        async with http.post("/worklogs", json=ENTRY, headers=headers) as answer:
                            await answer.read()
                            ok = answer.status == 201
                    else:
                        async with http.get("/worklogs", headers=headers) as answer:
                            await answer.read()
                            ok = answer.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if measuring:
                    latencies.append(time.perf_counter() - began)
                    errors += not ok

        tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
        try:
            await asyncio.sleep(warmup)
            measuring, started = True, time.perf_counter()
            await asyncio.sleep(seconds)
            measuring, elapsed = False, time.perf_counter() - started
            stopping = True
            await asyncio.gather(*tasks)
        finally:  # interrupted: no worker outlives the session
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return latencies, errors, elapsed


def measure_load(running: Topology, tokens: list[str], args: argparse.Namespace) -> list[Run]:
    runs = []
    for r in range(args.rounds):
        for n in SIZES if r % 2 == 0 else tuple(reversed(SIZES)):
            running.rotate(n)
            before = running.served()
            latencies, errors, elapsed = asyncio.run(
                drive(
                    running.users, tokens, args.concurrency, args.warmup, args.seconds, args.writes
                )
            )
            after = running.served()
            per_replica = {k: after[k] - before.get(k, 0) for k in sorted(after)}
            run = Run(
                n=n,
                round=r,
                seconds=elapsed,
                requests=len(latencies),
                errors=errors,
                rps=len(latencies) / elapsed,
                p50_ms=1000 * percentile(latencies, 0.50),
                p99_ms=1000 * percentile(latencies, 0.99),
                per_replica={k: v for k, v in per_replica.items() if v},
            )
            runs.append(run)
            if not args.json:
                print(
                    f"  round {r + 1} N={n}: {run.rps:.0f} req/s, p50 {run.p50_ms:.1f} ms, "
                    f"p99 {run.p99_ms:.1f} ms, errors {run.errors}",
                    file=sys.stderr,
                )
    return runs


# -- propagation ----------------------------------------------------------------------


async def first_refusal(url: str, token: str, since: float) -> tuple[float, int]:
    """(ms from ``since`` until ``url`` refuses the suspended tenant, polls it took)."""
    headers = {"Authorization": f"Bearer {token}"}
    polls = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.perf_counter() - since < 10:
            polls += 1
            async with http.get(f"{url}/worklogs", headers=headers) as answer:
                body = await answer.read()
                arrived = time.perf_counter()
            if answer.status == 403 and json.loads(body).get("code") == "tenant-suspended":
                return 1000 * (arrived - since), polls
            if answer.status != 200:
                raise RuntimeError(f"{url}: {answer.status} {body[:300]!r}")
    raise RuntimeError(f"{url} still serves {SUSPENDED} 10 s after the suspension")


async def serving(urls: list[str], token: str) -> None:
    """Wait until every replica serves the tenant again (and has it cached)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + 15
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for url in urls:
            while True:
                async with http.get(f"{url}/worklogs", headers=headers) as answer:
                    await answer.read()
                    if answer.status == 200:
                        break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{url} does not serve {SUSPENDED} again")
                await asyncio.sleep(0.01)


async def all_refuse(edges: list[str], token: str, since: float) -> list[tuple[float, int]]:
    return list(await asyncio.gather(*(first_refusal(e, token, since) for e in edges)))


def measure_propagation(running: Topology, token: str, changes: int) -> list[dict[str, Any]]:
    running.rotate(PROPAGATION_N)
    edges = running.edges[:PROPAGATION_N]
    samples = []
    for _ in range(changes):
        asyncio.run(serving(edges, token))
        suspended = running.tenancy("tenants", "suspend", SUSPENDED, "--reason", "bench")
        done = time.perf_counter()
        if suspended.returncode != 0:
            raise RuntimeError(f"suspend failed: {suspended.stderr}")
        try:
            seen = asyncio.run(all_refuse(edges, token, done))
        finally:
            activated = running.tenancy("tenants", "activate", SUSPENDED, "--reason", "bench")
            if activated.returncode != 0:
                raise RuntimeError(f"activate failed: {activated.stderr}")
        samples.append(
            {
                "ms": max(ms for ms, _ in seen),
                "per_edge_ms": [ms for ms, _ in seen],
                "polls": [polls for _, polls in seen],
            }
        )
    asyncio.run(serving(edges, token))
    return samples


# -- run and report -------------------------------------------------------------------


def seed_and_tokens(running: Topology) -> dict[str, str]:
    import httpx

    tokens = {}
    for slug in TENANTS:
        minted = running.tenancy("dev-token", "--tenant", slug, "--sub", f"bench-{slug}")
        if minted.returncode != 0:
            raise RuntimeError(f"dev-token failed: {minted.stderr}")
        tokens[slug] = minted.stdout.strip()
    running.rotate(max(SIZES))
    with httpx.Client(base_url=running.users, timeout=10) as http:
        for token in tokens.values():
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(SEED_PER_TENANT):
                created = http.post("/worklogs", json=ENTRY, headers=auth)
                if created.status_code != 201:
                    raise RuntimeError(f"seeding: {created.status_code} {created.text}")
            listed = http.get("/worklogs", headers=auth)
            if listed.status_code != 200 or not listed.json()["items"]:
                raise RuntimeError(f"sanity: {listed.status_code} {listed.text[:300]}")
        if http.get("/worklogs").status_code != 401:
            raise RuntimeError("sanity: GET /worklogs without a token was not refused")
    return tokens


def summarize(runs: list[Run], samples: list[dict[str, Any]]) -> dict[str, Any]:
    medians = {
        n: {
            metric: statistics.median(getattr(r, metric) for r in runs if r.n == n)
            for metric in ("rps", "p50_ms", "p99_ms")
        }
        for n in SIZES
    }
    errors = {n: sum(r.errors for r in runs if r.n == n) for n in SIZES}
    ratios = {n: medians[n]["rps"] / medians[SIZES[0]]["rps"] for n in SIZES}
    times = [s["ms"] for s in samples]
    return {
        "medians": medians,
        "errors": errors,
        "ratios": ratios,
        "propagation_ms": {
            "median": statistics.median(times),
            "max": max(times),
            "samples": times,
            "target": TARGET_MS,
        },
    }


def report(result: dict[str, Any]) -> None:
    a = result["settings"]
    print(
        f"os.cpu_count() = {result['cpu_count']}; load average before "
        f"{' '.join(f'{x:.2f}' for x in result['loadavg_before'])}, after "
        f"{' '.join(f'{x:.2f}' for x in result['loadavg_after'])}"
    )
    print(
        f"GET /worklogs through HAProxy (round robin) -> N edges -> HAProxy -> N worklogs, "
        f"PostgreSQL as the app role, Redis replay guard; aiohttp client in-process, "
        f"{a['concurrency']} connections, writes {a['writes']:.0%}, median of {a['rounds']} x "
        f"{a['seconds']:g} s (warm-up {a['warmup']:g} s each)"
    )
    print(f"{'N':>3}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs N=1':>9}{'errors':>8}")
    for n in SIZES:
        m = result["medians"][n]
        print(
            f"{n:>3}{m['rps']:>10.0f}{m['p50_ms']:>10.1f}{m['p99_ms']:>10.1f}"
            f"{result['ratios'][n]:>8.2f}x{result['errors'][n]:>8}"
        )
    last = {r["n"]: r["per_replica"] for r in result["runs"]}
    for n in SIZES:
        share = ", ".join(f"{k.split('/')[1]} {v}" for k, v in last[n].items())
        print(f"  N={n} last round, 2xx per server (warm-up included): {share}")
    p = result["propagation_ms"]
    print(
        f"suspension -> every edge replica refuses ({PROPAGATION_N} edges polled directly, "
        f"{len(p['samples'])} suspensions): median {p['median']:.1f} ms, max {p['max']:.1f} ms "
        f"(target < {TARGET_MS:.0f} ms: {'met' if p['max'] < TARGET_MS else 'NOT met'})"
    )
    polls = [max(s["polls"]) for s in result["propagation"]]
    print(
        f"  samples ms: {', '.join(f'{x:.1f}' for x in p['samples'])}; "
        f"polls until refused (slowest edge): {', '.join(map(str, polls))}"
    )


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over N = 1, 2, 4")
    parser.add_argument("--concurrency", type=int, default=32, help="client connections")
    parser.add_argument("--writes", type=float, default=0.0, help="share of POST /worklogs")
    parser.add_argument("--changes", type=int, default=7, help="suspensions to time")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.rounds < 1 or args.changes < 1 or args.concurrency < 1:
        parser.error("--rounds, --changes and --concurrency must be at least 1")
    sys.path.insert(0, str(ROOT))  # tests.infra.tools (ensure_tool)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = run(args)
    except KeyboardInterrupt:
        sys.exit(f"{PROG}: interrupted; processes, database and role removed")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


def run(args: argparse.Namespace) -> dict[str, Any]:
    loadavg_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="bench-replicas-") as directory,
        scratch_database() as (_owner_url, app_url),
        ExitStack() as stack,
        topology(Path(directory), app_url, stack) as running,
    ):
        if not args.json:
            print(f"{len(running.edges)} edges + 4 worklogs up; measuring", file=sys.stderr)
        tokens = seed_and_tokens(running)
        runs = measure_load(running, [tokens[s] for s in TENANTS], args)
        samples = measure_propagation(running, tokens[SUSPENDED], args.changes)
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
        "settings": {k: getattr(args, k) for k in ("seconds", "warmup", "rounds")}
        | {"concurrency": args.concurrency, "writes": args.writes, "changes": args.changes},
        **summarize(runs, samples),
        "runs": [asdict(r) for r in runs],
        "propagation": samples,
    }


if __name__ == "__main__":
    main()
