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
each variant reports the median of its rounds. That plumbing (servers, wrk, medians) is
``bench/harness.py``, shared with ``propagation.py``. A script, not a test: nothing
asserts.

    .venv/bin/python bench/edge.py [--duration 10] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import harness
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
PROG = Path(__file__).name


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
    return TenancyMiddleware(
        inner, verifier=verifier, tenants=registry, region=REGION, public_paths=("/healthz",)
    )


def open_engine(data_dir: Path) -> Engine:
    from sqlalchemy import create_engine  # not imported by the bare server

    return create_engine(f"sqlite:///{data_dir / 't.db'}")


# -- driver side ----------------------------------------------------------------------


def prepare(data_dir: Path) -> str:
    """Create the issuer, the registry and tenant ``acme``; return a token for it."""
    from tenancy.identity import DevIssuer
    from tenancy.tenants import TenantRegistry

    issuer = DevIssuer.load_or_create(data_dir)
    registry = TenantRegistry(open_engine(data_dir))
    registry.create_schema()
    tenant = registry.ensure(TENANT_SLUG, region=REGION)
    return issuer.mint(
        tenant_id=tenant.id, subject=SUBJECT, audience=AUDIENCE, scopes=["worklogs:read"], ttl=3600
    )


def spawn_server(variant: str, port: int, data_dir: Path) -> harness.Server:
    return harness.spawn(
        harness.self_command(
            __file__, "--serve", variant, "--port", str(port), "--data-dir", str(data_dir)
        )
    )


def sanity_check(port: int, token: str) -> None:
    """The tenancy server must take the real path: 200 + tenant with the token, 401 without."""
    status, body = harness.http_get(port, PATH, harness.bearer(token))
    if status != 200 or json.loads(body).get("tenant") != TENANT_SLUG:
        raise RuntimeError(f"tenancy server with token: {status} {body!r}")
    status, body = harness.http_get(port, PATH)
    if status != 401:
        raise RuntimeError(f"tenancy server without token: expected 401, got {status}")


def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, object]:
    wrk = harness.ensure_wrk(PROG)
    token = prepare(data_dir)
    ports = {variant: harness.free_port() for variant in VARIANTS}
    load = harness.Load.from_args(args)
    with harness.running() as servers:
        for variant in VARIANTS:
            servers.append(spawn_server(variant, ports[variant], data_dir))
        for proc, variant in zip(servers, VARIANTS, strict=True):
            harness.wait_ready(proc, ports[variant])
        sanity_check(ports["tenancy"], token)
        runs = harness.alternate(
            wrk, ports, PATH, load, headers=harness.bearer(token), progress=not args.json
        )
    medians = harness.medians(runs, VARIANTS)
    return {
        **load.describe(PATH),
        "registry_cache_ttl_s": REGISTRY_CACHE_TTL,
        "token": "hot (verified-token cache hit)",
        "medians": medians,
        "runs": [asdict(r) for r in runs],
        "ratio": medians["tenancy"]["rps"] / medians["bare"]["rps"],
        "target": TARGET_RATIO,
    }


def report(result: dict[str, object]) -> None:
    medians: dict[str, dict[str, float]] = result["medians"]  # type: ignore[assignment]
    print(
        f"GET {result['path']} on loopback, server on CPU 0, wrk on CPU 1, "
        f"{result['connections']} connections, median of {result['rounds']} x "
        f"{result['duration_s']} s rounds (warm-up {result['warmup_s']} s each)"
    )
    print(
        f"tenancy: hot token (verified-token cache hit), tenant registry "
        f"cache_ttl={result['registry_cache_ttl_s']:.0f} s (cache hit)"
    )
    print(harness.TABLE_HEADER)
    for variant, m in medians.items():
        print(harness.table_row(variant, m))
    print(f"ratio tenancy/bare throughput: {result['ratio']:.2f} (target >= {TARGET_RATIO:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_options(parser, VARIANTS, rounds=2, rounds_help="rounds per variant (>= 2)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.serve:
        harness.serve(build_app(args.serve, args.data_dir), args.port)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (alternation cancels drift)")
    harness.require_cpus(PROG, "server and load generator are pinned apart")
    with harness.state_dir(args.data_dir) as data_dir:
        result = measure(args, data_dir)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
