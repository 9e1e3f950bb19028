"""Wall time of a full isolation probe of the example services, against the 30 s target.

What it measures: ``tenancy probe --config examples/probe/demo.toml`` (2 tenants x 3
identities, support staff without / with an expired / with an active grant, all routes)
run as a process against ``tenancy demo``, ``--runs`` times: the wall clock of the whole
command (interpreter start-up, the nine ``tenancy dev-token`` commands and the report
included) and, from its JSON, ``duration_s`` and ``requests`` (the probe phase alone:
seeding, controls, attacks). Target: median wall time < 30 s. After each probe run, a
baseline in the same run: as many plain authorized ``GET /worklogs`` through the edge as
the probe just sent, sequential on one httpx client, so that the probe's requests/s can be
read against what the services themselves cost per request.

Why: the probe is meant to run in CI on every change; if it takes minutes, it will be
skipped. The split says where the time goes: token commands and start-up (wall minus
probe phase) vs. requests, and whether the probe's request rate is near the services'
own (ratio ~1: the services are the cost) or far below it (the probe itself is).

How: a fresh temp data directory (SQLite; or ``--database-url`` with a PostgreSQL
*application-role* URL whose database you migrated first with ``tenancy db migrate``,
docs/operations/deploy.md), the demo on free loopback
ports, the two grants made with the CLI exactly as ``examples/tests/e2e/test_isolation_kit.py``
does. Nothing is pinned: the probe, its token commands and the three demo processes
share the machine as they would in CI. A run with a leak, a void report or a non-zero
exit aborts the bench. A script, not a test: the target is reported, never asserted.

    .venv/bin/python bench/probe.py [--runs 3 | --quick] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import harness
import httpx

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "probe" / "demo.toml"
TARGET_S = 30.0
PROG = Path(__file__).name


@dataclass(frozen=True)
class Demo:
    edge: str
    env: dict[str, str]
    log: Path

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tenancy.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def must(self, *args: str) -> str:
        done = self.cli(*args)
        if done.returncode != 0:
            raise RuntimeError(
                f"tenancy {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done.stdout


@dataclass(frozen=True)
class Run:
    wall_s: float
    probe_s: float
    requests: int
    baseline_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.probe_s

    @property
    def baseline_rps(self) -> float:
        return self.requests / self.baseline_s


@contextmanager
def demo(tmp: Path, database_url: str | None) -> Iterator[Demo]:
    """``tenancy demo`` on free ports with ``tmp/data``; stopped (SIGINT, then kill) after."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TENANCY_DATA_DIR": str(tmp / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    if database_url:
        env["TENANCY_DATABASE_URL"] = database_url
    port, log = harness.free_port(), tmp / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenancy.cli",
                "demo",
                "--port",
                str(port),
                "--backend-port",
                str(harness.free_port()),
                "--console-port",
                str(harness.free_port()),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            harness.wait_ready(proc, port, timeout=60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        yield Demo(f"http://{harness.HOST}:{port}", env, log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def grant(services: Demo, tenant: str, engineer: str, hours: str) -> None:
    """A support grant as the e2e test makes it: requested, then approved for ``hours``."""
    requested = services.must(
        "support",
        "request",
        "--tenant",
        tenant,
        "--as",
        engineer,
        "--ticket",
        f"T-{engineer}",
        "--justification",
        "probe",
        "--scopes",
        "worklogs:read",
        "--hours",
        "2",
    )
    services.must(
        "support",
        "approve",
        requested.split()[-1],
        "--tenant",
        tenant,
        "--as",
        f"{tenant}-boss",
        "--roles",
        "admin",
        "--mfa",
        "--hours",
        hours,
    )


def probe_once(services: Demo, out: Path) -> tuple[float, float, int]:
    """One full probe through the CLI: wall s, probe-phase s, requests; aborts on a leak."""
    started = time.perf_counter()
    done = services.cli(
        "probe", "--config", str(CONFIG), "--target", services.edge, "--out", str(out)
    )
    wall = time.perf_counter() - started
    report = json.loads(out.read_text()) if out.exists() else {}
    leaked = report.get("summary", {}).get("leaked")
    if done.returncode != 0 or leaked != 0 or report.get("void", True):
        raise RuntimeError(
            f"probe not clean (exit {done.returncode}, leaked {leaked}, void "
            f"{report.get('void')}):\n{done.stdout[-3000:]}{done.stderr}"
        )
    return wall, float(report["duration_s"]), int(report["requests"])


def baseline(client: httpx.Client, token: str, requests: int) -> float:
    """Seconds for ``requests`` sequential authorized ``GET /worklogs`` through the edge."""
    headers = harness.bearer(token)
    started = time.perf_counter()
    for _ in range(requests):
        response = client.get("/worklogs", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"baseline GET /worklogs: {response.status_code}")
    return time.perf_counter() - started


def measure(args: argparse.Namespace, tmp: Path) -> list[Run]:
    runs: list[Run] = []
    with demo(tmp, args.database_url) as services:
        grant(services, "globex", "probe-staff-globex", "1")
        grant(services, "acme", "probe-staff-expired", "0.0003")  # about a second
        time.sleep(1.5)
        token = services.must(
            "dev-token",
            "--tenant",
            "acme",
            "--sub",
            "bench-reader",
            "--scopes",
            "worklogs:read",
            "--ttl",
            "3600",
        ).strip()
        with httpx.Client(base_url=services.edge, timeout=10) as client:
            baseline(client, token, 20)  # warm-up: connection, token and registry caches
            for n in range(args.runs):
                wall, probe_s, requests = probe_once(services, tmp / f"probe-{n}.json")
                runs.append(Run(wall, probe_s, requests, baseline(client, token, requests)))
                print(
                    f"  run {n + 1}: wall {wall:.2f} s, probe phase {probe_s:.2f} s, "
                    f"{requests} requests",
                    file=sys.stderr,
                )
    return runs


def report(runs: list[Run], database: str, load_before: float) -> None:
    print(
        f"tenancy probe --config {CONFIG.relative_to(ROOT)} against tenancy demo "
        f"({database}), {len(runs)} run(s); 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs"
    )
    print(
        f"{'run':>4}{'wall s':>9}{'probe s':>9}{'tokens+start s':>16}{'requests':>10}"
        f"{'req/s':>8}{'baseline req/s':>16}"
    )
    for n, r in enumerate(runs, 1):
        print(
            f"{n:>4}{r.wall_s:>9.2f}{r.probe_s:>9.2f}{r.wall_s - r.probe_s:>16.2f}"
            f"{r.requests:>10}{r.rps:>8.0f}{r.baseline_rps:>16.0f}"
        )
    wall = statistics.median(r.wall_s for r in runs)
    verdict = "met" if wall < TARGET_S else "NOT met"
    print(
        f"median wall {wall:.1f} s = {wall / TARGET_S:.2f} of the {TARGET_S:.0f} s target: "
        f"{verdict}"
    )
    rps = statistics.median(r.rps for r in runs)
    base = statistics.median(r.baseline_rps for r in runs)
    print(
        f"probe phase {rps:.0f} req/s = {rps / base:.2f} x the baseline's {base:.0f} req/s "
        f"(sequential authorized GET /worklogs through the edge)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="probe runs (median reported)")
    parser.add_argument("--quick", action="store_true", help="one run (same as --runs 1)")
    parser.add_argument(
        "--database-url",
        help="run the demo on this PostgreSQL app-role URL (migrated beforehand); default SQLite",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    load_before = os.getloadavg()[0]  # other work on the machine shows in every number
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-probe-") as tmp:
        runs = measure(args, Path(tmp))
    report(runs, "PostgreSQL" if args.database_url else "SQLite", load_before)


if __name__ == "__main__":
    main()
