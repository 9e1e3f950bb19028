"""Edge overhead of ``TenancyMiddleware``: bare Starlette vs. the same app behind it.

What it measures: requests/s and p50/p99 latency of one small authenticated-style JSON
route (``GET /whoami``), served by (a) bare Starlette and (b) the same Starlette app
wrapped in ``TenancyMiddleware`` with a hot token, measured in the same run over
loopback, and the throughput ratio (b)/(a). Target: ratio >= 0.80.

Why: bare Starlette answering small JSON under uvicorn does roughly 14k req/s on one
core, i.e. ~70 us per request, so every microsecond the edge adds shows. A PyJWT EdDSA
verification alone costs ~200 us, so without the verified-token cache the middleware
would cut throughput by several times; this bench checks that the *cached* path (token
cache hit + tenant registry cache hit, ``cache_ttl=3600``) keeps the cost small.

How: each server is this file re-invoked (``--serve bare|tenancy``) under uvicorn
(uvloop + httptools, one worker, log level warning) pinned to CPU 0; ``wrk --latency``
is pinned to CPU 1 and sends the same ``Authorization`` header to both (the bare app
ignores it, so requests are the same size). Runs alternate bare, tenancy, bare, ... and
each variant reports the median of its rounds. A script, not a test: nothing asserts.

    .venv/bin/python bench/edge.py [--duration 10] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from sqlalchemy import Engine

REGION = "eu-central-1"
AUDIENCE = "bench"
TENANT_SLUG = "acme"
SUBJECT = "alice"
REGISTRY_CACHE_TTL = 3600.0
PATH = "/whoami"
VARIANTS = ("bare", "tenancy")
TARGET_RATIO = 0.80


# -- server side (``--serve``) --------------------------------------------------------


def build_app(variant: str, data_dir: Path) -> ASGIApp:
    """The app for ``variant``; tenancy is imported only for the tenancy server."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def whoami_bare(request: Request) -> Response:
        return JSONResponse({"tenant": TENANT_SLUG, "subject": SUBJECT})

    if variant == "bare":
        return Starlette(routes=[Route("/healthz", healthz), Route(PATH, whoami_bare)])

    from tenancy.context import current
    from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
    from tenancy.identity.dev import JWKS_FILE
    from tenancy.middleware import TenancyMiddleware
    from tenancy.tenants import TenantRegistry

    async def whoami(request: Request) -> Response:
        ctx = current()
        return JSONResponse({"tenant": ctx.tenant_slug, "subject": ctx.principal.subject})

    keys = JWKSKeySource.from_file(data_dir / JWKS_FILE, algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=AUDIENCE, keys=keys, algorithms=["EdDSA"])]
    )
    registry = TenantRegistry(open_engine(data_dir), cache_ttl=REGISTRY_CACHE_TTL)
    inner = Starlette(routes=[Route("/healthz", healthz), Route(PATH, whoami)])
    return TenancyMiddleware(inner, verifier=verifier, tenants=registry, region=REGION,
                             public_paths=("/healthz",))


def open_engine(data_dir: Path) -> Engine:
    from sqlalchemy import create_engine  # not imported by the bare server
    return create_engine(f"sqlite:///{data_dir / 't.db'}")


def serve(variant: str, port: int, data_dir: Path) -> None:
    import uvicorn
    uvicorn.run(build_app(variant, data_dir), host="127.0.0.1", port=port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False, workers=1)


# -- driver side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    variant: str
    rps: float
    p50_ms: float
    p99_ms: float


def prepare(data_dir: Path) -> str:
    """Create the issuer, the registry and tenant ``acme``; return a token for it."""
    from tenancy.identity import DevIssuer
    from tenancy.tenants import TenantRegistry

    issuer = DevIssuer.load_or_create(data_dir)
    registry = TenantRegistry(open_engine(data_dir))
    registry.create_schema()
    tenant = registry.ensure(TENANT_SLUG, region=REGION)
    return issuer.mint(tenant_id=tenant.id, subject=SUBJECT, audience=AUDIENCE,
                       scopes=["worklogs:read"], ttl=3600)


def ensure_wrk() -> str:
    if found := shutil.which("wrk"):
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(install, capture_output=True)
        if found := shutil.which("wrk"):
            return found
    sys.exit("edge.py: wrk is not installed (Debian: apt-get install wrk); cannot run")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def spawn_server(variant: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", "0", sys.executable, str(Path(__file__).resolve()),
                             "--serve", variant, "--port", str(port), "--data-dir", str(data_dir)])


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    """Poll ``/healthz`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {proc.returncode}")
        try:
            if get(port, "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s")


def sanity_check(port: int, token: str) -> None:
    """The tenancy server must take the real path: 200 + tenant with the token, 401 without."""
    status, body = get(port, PATH, token)
    if status != 200 or json.loads(body).get("tenant") != TENANT_SLUG:
        raise RuntimeError(f"tenancy server with token: {status} {body!r}")
    status, body = get(port, PATH)
    if status != 401:
        raise RuntimeError(f"tenancy server without token: expected 401, got {status}")


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(output: str, pct: str) -> float:
    match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {pct}% latency line in wrk output:\n{output}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def run_wrk(wrk: str, variant: str, port: int, token: str, seconds: int,
            connections: int) -> Run:
    cmd = ["taskset", "-c", "1", wrk, "-t1", f"-c{connections}", f"-d{seconds}s",
           "--latency", "-H", f"Authorization: Bearer {token}",
           f"http://127.0.0.1:{port}{PATH}"]
    output = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if bad:
        raise RuntimeError(f"{variant}: {bad.group(1)} non-2xx responses; not a valid run")
    if errors := re.search(r"Socket errors:.*", output):
        print(f"warning: {variant}: {errors.group(0)}", file=sys.stderr)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{output}")
    return Run(variant, float(rps.group(1)), _latency_ms(output, "50"),
               _latency_ms(output, "99"))


def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, object]:
    wrk = ensure_wrk()
    token = prepare(data_dir)
    ports = {variant: free_port() for variant in VARIANTS}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for variant in VARIANTS:
            servers.append(spawn_server(variant, ports[variant], data_dir))
        for proc, variant in zip(servers, VARIANTS, strict=True):
            wait_ready(proc, ports[variant])
        sanity_check(ports["tenancy"], token)
        runs: list[Run] = []
        for round_no in range(args.rounds):
            for variant in VARIANTS:
                if args.warmup > 0:
                    run_wrk(wrk, variant, ports[variant], token, args.warmup, args.connections)
                runs.append(run_wrk(wrk, variant, ports[variant], token, args.duration,
                                    args.connections))
                if not args.json:
                    r = runs[-1]
                    print(f"  round {round_no + 1} {variant:8} {r.rps:9.0f} req/s "
                          f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms", file=sys.stderr)
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
    medians = {
        v: {key: statistics.median(getattr(r, key) for r in runs if r.variant == v)
            for key in ("rps", "p50_ms", "p99_ms")}
        for v in VARIANTS
    }
    return {
        "path": PATH, "duration_s": args.duration, "warmup_s": args.warmup,
        "rounds": args.rounds, "connections": args.connections,
        "registry_cache_ttl_s": REGISTRY_CACHE_TTL, "token": "hot (verified-token cache hit)",
        "medians": medians, "runs": [asdict(r) for r in runs],
        "ratio": medians["tenancy"]["rps"] / medians["bare"]["rps"], "target": TARGET_RATIO,
    }


def report(result: dict[str, object]) -> None:
    medians: dict[str, dict[str, float]] = result["medians"]  # type: ignore[assignment]
    print(f"GET {result['path']} on loopback, server on CPU 0, wrk on CPU 1, "
          f"{result['connections']} connections, median of {result['rounds']} x "
          f"{result['duration_s']} s rounds (warm-up {result['warmup_s']} s each)")
    print(f"tenancy: hot token (verified-token cache hit), tenant registry "
          f"cache_ttl={result['registry_cache_ttl_s']:.0f} s (cache hit)")
    print(f"{'variant':10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for variant, m in medians.items():
        print(f"{variant:10}{m['rps']:>10.0f}{m['p50_ms']:>10.3f}{m['p99_ms']:>10.3f}")
    print(f"ratio tenancy/bare throughput: {result['ratio']:.2f} "
          f"(target >= {TARGET_RATIO:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help="state directory (default: a temp dir)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per variant (>= 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.data_dir)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (alternation cancels drift)")
    if not {0, 1} <= os.sched_getaffinity(0):
        sys.exit("edge.py: needs CPUs 0 and 1 (server and load generator are pinned apart)")
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmp:
        result = measure(args, args.data_dir or Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
