"""Cost of the audit log: requests/s with auditing on vs off, in the same run.

``GET /audited`` behind ``TenancyMiddleware`` (hot user token: verified-token cache hit,
tenant registry ``cache_ttl=3600``); the route emits one ``SecurityEvent`` for the
request's tenant (actor, request id, details) to the middleware's sink:

- **off**: a sink that drops events;
- **on**: ``AuditLog`` over SQLite (WAL) in the state directory, default batching
  (``batch_max=500``, ``flush_interval=0.05``): hashing, chaining and inserts on its
  writer thread, in the same process (same CPU) as the server.

Servers on CPU 0, wrk on CPU 1, variants alternating round by round (``harness``).
After the run the audit server is stopped (its ``atexit`` hook drains the queue) and
the chain is verified: every request answered 200 must be in it.

    .venv/bin/python bench/audit.py [--duration 10 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from starlette.types import ASGIApp

REGION = "eu-central-1"
AUDIENCE = "bench"
TENANT_SLUG = "acme"
SUBJECT = "alice"
PATH = "/audited"
REGISTRY_CACHE_TTL = 3600.0
VARIANTS = ("off", "on")
TARGET_RATIO = 0.90
PROG = Path(__file__).name
KEY_HEX = "42" * 32  # a bench key; production keys come from TENANCY_AUDIT_KEY or a file


def open_engine(path: Path) -> Engine:
    from sqlalchemy import create_engine, event

    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


class DropSink:
    def emit(self, event: object) -> None:
        return None


def build_app(variant: str, data_dir: Path) -> ASGIApp:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from tenancy.audit import AuditLog
    from tenancy.clock import SYSTEM_CLOCK
    from tenancy.context import current
    from tenancy.events import EventSink, SecurityEvent
    from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
    from tenancy.identity.dev import JWKS_FILE
    from tenancy.middleware import TenancyMiddleware
    from tenancy.tenants import TenantRegistry

    sink: EventSink
    if variant == "on":
        log = AuditLog(open_engine(data_dir / "audit.db"), bytes.fromhex(KEY_HEX))
        log.create_schema()
        sink = log
    else:
        sink = DropSink()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def audited(request: Request) -> Response:
        ctx = current()
        sink.emit(
            SecurityEvent(
                "bench.request",
                SYSTEM_CLOCK.now(),
                tenant_id=ctx.tenant_id,
                actor=ctx.principal.subject,
                request_id=ctx.request_id,
                details={"path": PATH},
            )
        )
        return JSONResponse({"tenant": ctx.tenant_slug, "subject": ctx.principal.subject})

    keys = JWKSKeySource.from_file(data_dir / JWKS_FILE, algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=AUDIENCE, keys=keys, algorithms=["EdDSA"])]
    )
    registry = TenantRegistry(open_engine(data_dir / "t.db"), cache_ttl=REGISTRY_CACHE_TTL)
    inner = Starlette(routes=[Route("/healthz", healthz), Route(PATH, audited)])
    return TenancyMiddleware(
        inner,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        public_paths=("/healthz",),
        events=sink,
    )


def prepare(data_dir: Path) -> tuple[str, str]:
    from tenancy.identity import DevIssuer
    from tenancy.tenants import TenantRegistry

    issuer = DevIssuer.load_or_create(data_dir)
    registry = TenantRegistry(open_engine(data_dir / "t.db"))
    registry.create_schema()
    tenant = registry.ensure(TENANT_SLUG, region=REGION)
    token = issuer.mint(
        tenant_id=tenant.id, subject=SUBJECT, audience=AUDIENCE, scopes=["worklogs:read"], ttl=3600
    )
    return tenant.id, token


def audit_state(data_dir: Path, tenant_id: str) -> tuple[int, str]:
    from tenancy.audit import AuditLog

    db = data_dir / "audit.db"
    if not db.exists():
        return 0, "no audit database"
    log = AuditLog(open_engine(db), bytes.fromhex(KEY_HEX))
    try:
        result = log.verify(tenant_id)
        return result.records, str(result)
    finally:
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_options(parser, VARIANTS, rounds=3, rounds_help="rounds per variant (>= 2)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.serve:
        harness.serve(build_app(args.serve, args.data_dir), args.port)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (alternation cancels drift)")
    harness.require_cpus(PROG, "servers and load generator are pinned apart")
    wrk = harness.ensure_wrk(PROG)
    load = harness.Load.from_args(args)
    with harness.state_dir(args.data_dir) as data_dir:
        tenant_id, token = prepare(data_dir)
        before, _ = audit_state(data_dir, tenant_id)
        ports = {v: harness.free_port() for v in VARIANTS}
        with harness.running() as servers:
            for v in VARIANTS:
                servers.append(
                    harness.spawn(
                        harness.self_command(
                            __file__,
                            "--serve",
                            v,
                            "--port",
                            str(ports[v]),
                            "--data-dir",
                            str(data_dir),
                        )
                    )
                )
            for proc, v in zip(servers, VARIANTS, strict=True):
                harness.wait_ready(proc, ports[v])
            for v, port in ports.items():
                status, body = harness.http_get(port, PATH, harness.bearer(token))
                if status != 200:
                    raise RuntimeError(f"{v}: GET {PATH} -> {status} {body[:200]!r}")
            runs = harness.alternate(
                wrk, ports, PATH, load, headers=harness.bearer(token), progress=not args.json
            )
        # servers stopped (SIGTERM: uvicorn shuts down, atexit drains the audit queue)
        after, verdict = audit_state(data_dir, tenant_id)
    med = harness.medians(runs, VARIANTS)
    ratio = med["on"]["rps"] / med["off"]["rps"]
    result: dict[str, Any] = {
        **load.describe(PATH),
        "medians": med,
        "ratio_on_off": ratio,
        "target": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
        "audit_events_written": after - before,
        "audit_verify": verdict,
        "cpus": len(os.sched_getaffinity(0)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"GET {PATH} behind TenancyMiddleware (hot token), one audit event per request; "
        f"server CPU 0, wrk CPU 1, {load.connections} connections, median of "
        f"{load.rounds} x {load.duration} s rounds, variants alternating"
    )
    print(harness.TABLE_HEADER)
    for v in VARIANTS:
        print(harness.table_row(v, med[v]))
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"ratio on/off throughput: {ratio:.3f} (target >= {TARGET_RATIO:.2f}: {met})")
    print(
        f"audit events written during the run (warm-ups included): {after - before}; "
        f"verify: {verdict}"
    )
    if not sys.stdout.isatty():
        sys.stdout.flush()


if __name__ == "__main__":
    main()
