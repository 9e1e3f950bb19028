"""Cost of policy authorization: decisions in-process, and the edge with authorization on.

What it measures, in one run:

1. In-process, on CPU 0: decisions/s and p50/p99 microseconds per call for one
   realistic input (``build_input`` of a ``TenantContext``: user ``alice``, role
   ``member``, scopes ``worklogs:read worklogs:write``, ``GET /worklogs`` of service
   ``worklogs``; the policy allows it):
   - the embedded engine, uncached (``EmbeddedRego(fixture_bundle())
     .decide(input)``: what a cache miss costs);
   - OPA's own Go evaluator, uncached (``tenancy.authz.golib.GoRego``, the reference
     engine), or "unavailable" when ``opa-golib-python-bindings`` is not installed;
   - a miss through ``Authorizer`` with its cache off (``await decide``: input built, the
     engine run in a worker thread under a deadline), as the middleware pays it;
   - a hit of ``Authorizer`` with a warm ``DecisionCache``: ``cached(ctx, action,
     now=...)``, which the middleware calls on every request, and ``await decide(...)``;
   - the decision-log writer's work per record (``DecisionRecord.as_json`` + JSON
     encoding), which ``JsonLinesDecisionLog`` does on a thread of the same process for
     every decision, hits included.
   Every call is timed on its own (``time.perf_counter_ns``); the operations' batches are
   interleaved after one warm-up batch each, so drift hits them alike.
2. End to end under ``wrk``: ``GET /whoami`` returning the same small JSON from
   (a) **bare** Starlette, (b) **tenancy**: the same app behind ``TenancyMiddleware``
   with a hot user token (verified-token cache hit, tenant registry ``cache_ttl=3600``),
   no authorizer, (c) **tenancy+authz**: (b) plus ``authorizer=Authorizer(EmbeddedRego(
   bundle), service="bench", bundle=bundle)`` and ``routes=`` the app's routes, the
   policy data declaring ``GET /whoami`` for service ``bench``; by default with a
   ``JsonLinesDecisionLog``, as production runs it (``--decision-log off`` to compare).
   Reported: req/s, p50, p99, CPU 0 microseconds per request, and the throughput ratios
   tenancy/bare, tenancy+authz/bare (target >= 0.70) and tenancy+authz/tenancy.

Why: a policy engine is far too slow to ask on every request (hundreds of microseconds
per decision, while a cached edge request costs about 70 us in total), so the design
rests on the decision cache: after the first request of a principal for a route, the
edge pays a dictionary lookup, plus the decision log's record. This bench shows both
sides: what a miss costs per engine, what a hit costs, and what the whole edge stack
keeps of bare Starlette's throughput with a warm cache.

How: the microbenchmarks run first, in this process pinned to CPU 0 (engines and their
threads are created there), with nothing else running. For the end-to-end part every
server is this file re-invoked (``--serve bare|tenancy|tenancy+authz``) under uvicorn
(uvloop + httptools, one worker, log level warning) pinned to CPU 0, the decision log's
writer thread included; ``wrk --latency`` is pinned to CPU 1 and sends the same
``Authorization`` header to all (the bare app ignores it). Before measuring, every
server must answer 200 with the expected body, the tenancy servers 401 without a token,
and the authorizing server 403 for a route its policy does not declare and 404 for a
path no route matches (and, with the log on, have logged a decision). Runs alternate
bare, tenancy, tenancy+authz, bare, ... and each variant reports the median of its
rounds. That plumbing is ``bench/harness.py``, shared with ``edge.py`` and
``propagation.py``. A script, not a test: nothing asserts.

    .venv/bin/python bench/authz.py [--duration 10] [--rounds 3] [--json]
        [--decision-log on|off] [--micro-seconds 2] [--batches 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness

from tenancy.authz.policytests import fixture_bundle

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from starlette.types import ASGIApp

REGION = "eu-central-1"
AUDIENCE = "bench"
TENANT_SLUG = "acme"
SUBJECT = "alice"
ROLES = ("member",)
SCOPES = ("worklogs:read", "worklogs:write")
REGISTRY_CACHE_TTL = 3600.0
PATH = "/whoami"
UNDECLARED_PATH = "/undeclared"  # a route of the app that the policy does not declare
UNROUTED_PATH = "/nowhere"  # no route at all
SERVICE = "bench"  # the end-to-end app's name in the policy's route data
MICRO_SERVICE = "worklogs"
MICRO_METHOD, MICRO_ROUTE = "GET", "/worklogs"
VARIANTS = ("bare", "tenancy", "tenancy+authz")
TARGET_RATIO = 0.70
PROG = Path(__file__).name
VARIANT_WIDTH = 15
E2E_HEADER = (
    f"{'variant':{VARIANT_WIDTH}}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU0 us/req':>13}"
)


# -- server side (``--serve``) --------------------------------------------------------


def decision_log_path(data_dir: Path) -> Path:
    return data_dir / "decision-log" / f"{SERVICE}.jsonl"


def build_app(variant: str, data_dir: Path, decision_log: bool) -> ASGIApp:
    """The app for ``variant``: the same three routes in all; tenancy only where used."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def undeclared(request: Request) -> Response:
        return JSONResponse({"reached": True})

    if variant == "bare":

        async def whoami_bare(request: Request) -> Response:
            return JSONResponse({"tenant": TENANT_SLUG, "subject": SUBJECT})

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route(PATH, whoami_bare),
                Route(UNDECLARED_PATH, undeclared),
            ]
        )

    from tenancy.authz import Authorizer, EmbeddedRego, JsonLinesDecisionLog
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
    inner = Starlette(
        routes=[Route("/healthz", healthz), Route(PATH, whoami), Route(UNDECLARED_PATH, undeclared)]
    )
    authorizer = None
    if variant == "tenancy+authz":
        bundle = fixture_bundle()
        bundle.set(("tenancy", "routes", SERVICE), {f"GET {PATH}": {"scopes": []}})
        log = JsonLinesDecisionLog(decision_log_path(data_dir)) if decision_log else None
        authorizer = Authorizer(EmbeddedRego(bundle), service=SERVICE, bundle=bundle, log=log)
    return TenancyMiddleware(
        inner,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        public_paths=("/healthz",),
        authorizer=authorizer,
        routes=inner.routes if authorizer is not None else (),
    )


def open_engine(data_dir: Path) -> Engine:
    from sqlalchemy import create_engine  # not imported by the bare server

    return create_engine(f"sqlite:///{data_dir / 't.db'}")


# -- microbenchmarks ------------------------------------------------------------------


def _sync_batch(fn: Callable[[], object], budget_ns: int) -> list[int]:
    """Call ``fn`` for ``budget_ns``; the nanoseconds of each call.

    One clock read per call (each call's end is the next one's start), so the samples
    add up to the batch's wall time and include the loop's own few tens of ns.
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    start = clock()
    end = start + budget_ns
    while start < end:
        fn()
        now = clock()
        append(now - start)
        start = now
    return samples


async def _async_batch(fn: Callable[[], Awaitable[object]], budget_ns: int) -> list[int]:
    """``_sync_batch`` for a coroutine function, awaited inside the running loop."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    start = clock()
    end = start + budget_ns
    while start < end:
        await fn()
        now = clock()
        append(now - start)
        start = now
    return samples


def _summary(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "ops_per_s": n / (sum(ordered) / 1e9),
        "p50_us": ordered[n // 2] / 1000.0,
        "p99_us": ordered[min(n - 1, int(n * 0.99))] / 1000.0,
        "calls": n,
    }


def _same(a: Any, b: Any) -> bool:
    """Two decisions say the same, whichever engine made them."""
    return (a.allow, a.reasons, a.scopes, a.valid_until) == (
        b.allow,
        b.reasons,
        b.scopes,
        b.valid_until,
    )


def micro(seconds: float, batches: int) -> dict[str, Any]:
    """Every operation of part 1; to be called pinned to CPU 0 (threads inherit it)."""
    from tenancy.authz import (
        Action,
        Authorizer,
        EmbeddedRego,
        MemoryDecisionLog,
        build_input,
    )
    from tenancy.context import Principal, TenantContext
    from tenancy.errors import ConfigurationError
    from tenancy.identity import DEV_ISSUER

    tenant_id = str(uuid.uuid4())
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=tenant_id,
        subject=SUBJECT,
        roles=frozenset(ROLES),
        scopes=frozenset(SCOPES),
    )
    ctx = TenantContext(tenant_id, TENANT_SLUG, REGION, principal, f"req-{uuid.uuid4().hex}")
    action = Action.http(MICRO_METHOD, MICRO_ROUTE)
    now = time.time()
    document = build_input(
        ctx, service=MICRO_SERVICE, action=action, now=now, tenant_status="active"
    )

    bundle = fixture_bundle()
    embedded = EmbeddedRego(bundle)
    reference = embedded.decide(document)
    if not reference.allow:
        raise RuntimeError(f"the bench input is not allowed: {reference}")
    go: Any = None
    go_missing: str | None = None
    try:
        from tenancy.authz.golib import GoRego

        go = GoRego(bundle)  # imports the Go runtime here, so its threads are on CPU 0
    except (ImportError, ConfigurationError) as exc:
        go_missing = str(exc)
    if go is not None and not _same(go.decide(document), reference):
        raise RuntimeError("opa-go and embedded-rego disagree on the bench input")

    authorizer = Authorizer(embedded, service=MICRO_SERVICE, bundle=bundle)
    uncached = Authorizer(embedded, service=MICRO_SERVICE, bundle=bundle, cache=None)
    logged = MemoryDecisionLog()
    with_log = Authorizer(embedded, service=MICRO_SERVICE, bundle=bundle, log=logged)
    runner = asyncio.Runner()
    try:
        for a in (authorizer, with_log):
            runner.run(a.decide(ctx, action, now=now))  # the miss that warms the cache
        hit = authorizer.cached(ctx, action, now=now)
        if hit is None or not _same(hit, reference):
            raise RuntimeError(f"Authorizer.cached: no warm hit ({hit})")
        with_log.cached(ctx, action, now=now)
        record = logged.records[-1]  # a hit's record, as the writer thread receives it
        if not record.cached:
            raise RuntimeError("the decision log's record is not a cache hit")

        def log_line() -> str:
            return json.dumps(record.as_json(), separators=(",", ":"))

        def decide_hit() -> Awaitable[object]:
            return authorizer.decide(ctx, action, now=now)

        def decide_miss() -> Awaitable[object]:
            return uncached.decide(ctx, action, now=now)

        ops: dict[str, Callable[[int], list[int]]] = {
            "embedded-rego decide (cold)": lambda ns: _sync_batch(
                lambda: embedded.decide(document), ns
            ),
        }
        if go is not None:
            ops["opa-go decide (cold)"] = lambda ns: _sync_batch(lambda: go.decide(document), ns)
        ops["Authorizer miss, cache off"] = lambda ns: runner.run(_async_batch(decide_miss, ns))
        ops["Authorizer.cached (hit)"] = lambda ns: _sync_batch(
            lambda: authorizer.cached(ctx, action, now=now), ns
        )
        ops["await Authorizer.decide (hit)"] = lambda ns: runner.run(_async_batch(decide_hit, ns))
        ops["decision-log line (writer)"] = lambda ns: _sync_batch(log_line, ns)

        budget_ns = int(seconds / batches * 1e9)
        for run_batch in ops.values():
            run_batch(budget_ns)  # warm-up batch, not counted
        overhead = _summary(_sync_batch(lambda: None, budget_ns))["p50_us"] * 1000.0
        gc.collect()
        samples: dict[str, list[int]] = {op: [] for op in ops}
        for _ in range(batches):
            for op, run_batch in ops.items():
                samples[op].extend(run_batch(budget_ns))
    finally:
        runner.close()
    results: list[dict[str, Any]] = [
        {"op": op, "available": True, **_summary(values)} for op, values in samples.items()
    ]
    if go is None:
        results.insert(1, {"op": "opa-go decide (cold)", "available": False, "reason": go_missing})
    return {
        "input": {
            "service": MICRO_SERVICE,
            "action": f"{MICRO_METHOD} {MICRO_ROUTE}",
            "subject": SUBJECT,
            "roles": list(ROLES),
            "scopes": list(SCOPES),
            "decision": {"allow": reference.allow, "scopes": list(reference.scopes)},
        },
        "seconds_per_op": seconds,
        "batches": batches,
        "empty_call_ns": overhead,
        "log_line_bytes": len(log_line()),
        "results": results,
    }


# -- end to end: driver side ----------------------------------------------------------


def prepare(data_dir: Path) -> str:
    """Create the issuer, the registry and tenant ``acme``; return a token for it."""
    from tenancy.identity import DevIssuer
    from tenancy.tenants import TenantRegistry

    issuer = DevIssuer.load_or_create(data_dir)
    registry = TenantRegistry(open_engine(data_dir))
    registry.create_schema()
    tenant = registry.ensure(TENANT_SLUG, region=REGION)
    return issuer.mint(
        tenant_id=tenant.id,
        subject=SUBJECT,
        audience=AUDIENCE,
        roles=list(ROLES),
        scopes=list(SCOPES),
        ttl=3600,
    )


def spawn_server(variant: str, port: int, data_dir: Path, decision_log: str) -> harness.Server:
    return harness.spawn(
        harness.self_command(
            __file__,
            "--serve",
            variant,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--decision-log",
            decision_log,
        )
    )


def _expect(name: str, port: int, path: str, token: str | None, status: int) -> bytes:
    got, body = harness.http_get(port, path, harness.bearer(token))
    if got != status:
        raise RuntimeError(
            f"{name}: GET {path} {'with' if token else 'without'} token: "
            f"expected {status}, got {got} {body[:200]!r}"
        )
    return body


def _log_lines(path: Path, offset: int) -> list[bytes]:
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().splitlines()


def sanity_check(ports: dict[str, int], token: str, log: Path | None, offset: int) -> None:
    """Every server takes its real path; the authorizing one really authorizes (and logs)."""
    expected = {"tenant": TENANT_SLUG, "subject": SUBJECT}
    for variant, port in ports.items():
        body = _expect(variant, port, PATH, token, 200)
        if json.loads(body) != expected:
            raise RuntimeError(f"{variant}: expected {expected}, got {body!r}")
        if variant != "bare":
            _expect(variant, port, PATH, None, 401)
    _expect("tenancy", ports["tenancy"], UNDECLARED_PATH, token, 200)  # no authorizer
    _expect("tenancy+authz", ports["tenancy+authz"], UNDECLARED_PATH, token, 403)
    _expect("tenancy+authz", ports["tenancy+authz"], UNROUTED_PATH, token, 404)
    if log is None:
        return
    deadline = time.monotonic() + 5.0
    while not (lines := _log_lines(log, offset)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not lines or json.loads(lines[0]).get("service") != SERVICE:
        raise RuntimeError(f"tenancy+authz: no decision logged in {log}")


def log_stats(path: Path, offset: int) -> dict[str, Any]:
    """What the writer thread managed to write during the run (not its backlog at exit)."""
    records = dropped = 0
    for line in _log_lines(path, offset):
        if line.startswith(b'{"dropped_records"'):
            dropped += int(json.loads(line)["dropped_records"])
        else:
            records += 1
    size = path.stat().st_size - offset if path.exists() else 0
    return {
        "path": str(path),
        "records_written": records,
        "records_dropped": dropped,
        "bytes": size,
    }


def end_to_end(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    wrk = harness.ensure_wrk(PROG)
    token = prepare(data_dir)
    log = decision_log_path(data_dir) if args.decision_log == "on" else None
    offset = log.stat().st_size if log is not None and log.exists() else 0
    ports = {variant: harness.free_port() for variant in VARIANTS}
    load = harness.Load.from_args(args)
    with harness.running() as servers:
        for variant in VARIANTS:
            servers.append(spawn_server(variant, ports[variant], data_dir, args.decision_log))
        for proc, variant in zip(servers, VARIANTS, strict=True):
            harness.wait_ready(proc, ports[variant])
        sanity_check(ports, token, log, offset)
        runs = harness.alternate(
            wrk, ports, PATH, load, headers=harness.bearer(token), progress=not args.json
        )
    medians = harness.medians(runs, VARIANTS)
    rps = {v: m["rps"] for v, m in medians.items()}
    per_request = {v: 1e6 / r for v, r in rps.items()}
    return {
        **load.describe(PATH),
        "registry_cache_ttl_s": REGISTRY_CACHE_TTL,
        "token": "hot (verified-token cache hit)",
        "authorizer": {
            "engine": "embedded-rego",
            "service": SERVICE,
            "cache": "DecisionCache (warm: every measured request is a hit)",
            "decision_log": ("JsonLinesDecisionLog" if log is not None else "off"),
        },
        "decision_log": None if log is None else log_stats(log, offset),
        "medians": medians,
        "runs": [asdict(r) for r in runs],
        "cpu0_us_per_request": per_request,
        "ratios": {
            "tenancy/bare": rps["tenancy"] / rps["bare"],
            "tenancy+authz/bare": rps["tenancy+authz"] / rps["bare"],
            "tenancy+authz/tenancy": rps["tenancy+authz"] / rps["tenancy"],
        },
        "target": {"tenancy+authz/bare": TARGET_RATIO},
        "target_met": rps["tenancy+authz"] / rps["bare"] >= TARGET_RATIO,
        "authz_us_per_request": per_request["tenancy+authz"] - per_request["tenancy"],
    }


# -- report ---------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """Versions that move these numbers."""
    import importlib.metadata
    import platform

    found = {"python": platform.python_version()}
    for dist in ("regopy", "opa-golib-python-bindings", "starlette", "uvicorn", "uvloop"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "absent"
    return found


def report(result: dict[str, Any]) -> None:
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()))
    m = result["micro"]
    i = m["input"]
    print(
        f"Decisions in-process on CPU 0, input: {i['action']} of service {i['service']}, "
        f"user {i['subject']}, roles {' '.join(i['roles'])}, scopes {' '.join(i['scopes'])} "
        f"(allowed, needs {' '.join(i['decision']['scopes'])})"
    )
    print(
        f"each call timed on its own (perf_counter_ns; an empty call measures "
        f"{m['empty_call_ns']:.0f} ns, included); {m['batches']} interleaved batches, "
        f"{m['seconds_per_op']:g} s per operation in all, after one warm-up batch each"
    )
    print(f"{'operation':32}{'ops/s':>11}{'p50 us':>10}{'p99 us':>10}{'calls':>9}")
    for r in m["results"]:
        if not r["available"]:
            print(f"{r['op']:32}   unavailable: {r['reason']}")
            continue
        print(
            f"{r['op']:32}{r['ops_per_s']:>11.0f}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}"
            f"{r['calls']:>9}"
        )
    print(
        f"cold = no cache; miss = input built + engine in a worker thread under the "
        f"deadline; writer = JSON line per decision ({m['log_line_bytes']} B), on the "
        f"decision log's thread, hits included"
    )
    print()
    e = result["end_to_end"]
    med: dict[str, dict[str, float]] = e["medians"]
    print(
        f"GET {e['path']} on loopback, server on CPU 0, wrk on CPU 1, {e['connections']} "
        f"connections, median of {e['rounds']} x {e['duration_s']} s rounds (warm-up "
        f"{e['warmup_s']} s each), variants alternating"
    )
    print(
        f"tenancy: hot token (verified-token cache hit), tenant registry "
        f"cache_ttl={e['registry_cache_ttl_s']:.0f} s; tenancy+authz: same + "
        f"{e['authorizer']['engine']} Authorizer (service {e['authorizer']['service']!r}), "
        f"warm DecisionCache, decision log {e['authorizer']['decision_log']}"
    )
    print(E2E_HEADER)
    for variant, v in med.items():
        print(
            f"{variant:{VARIANT_WIDTH}}{v['rps']:>10.0f}{v['p50_ms']:>10.3f}"
            f"{v['p99_ms']:>10.3f}{e['cpu0_us_per_request'][variant]:>13.1f}"
        )
    ratios = e["ratios"]
    met = "met" if e["target_met"] else "NOT met"
    print(f"ratio tenancy/bare throughput:          {ratios['tenancy/bare']:.2f}")
    print(
        f"ratio tenancy+authz/bare throughput:    {ratios['tenancy+authz/bare']:.2f} "
        f"(target >= {TARGET_RATIO:.2f}: {met})"
    )
    print(
        f"ratio tenancy+authz/tenancy throughput: {ratios['tenancy+authz/tenancy']:.2f} "
        f"(authorization costs ~{e['authz_us_per_request']:.1f} us of CPU 0 per request; "
        f"CPU0 us/req = 1e6 / req/s, CPU 0 being saturated)"
    )
    if (log := e["decision_log"]) is not None:
        print(
            f"decision log ON, as in production (--decision-log off to compare): "
            f"{log['records_written']} records written ({log['bytes'] / 1e6:.1f} MB), "
            f"{log['records_dropped']} dropped by the writer (its backlog at server exit "
            f"is not counted)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_options(
        parser, VARIANTS, rounds=3, rounds_help="rounds per variant (>= 2 to cancel drift)"
    )
    parser.add_argument(
        "--decision-log",
        choices=("on", "off"),
        default="on",
        help="JSON-lines decision log in tenancy+authz (default on, as in production)",
    )
    parser.add_argument(
        "--micro-seconds", type=float, default=2.0, help="measured seconds per in-process operation"
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=10,
        help="interleaved batches the in-process seconds are split into",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.serve:
        harness.serve(build_app(args.serve, args.data_dir, args.decision_log == "on"), args.port)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (alternation cancels drift)")
    if args.micro_seconds <= 0 or args.batches < 1:
        parser.error("--micro-seconds must be positive and --batches at least 1")
    harness.require_cpus(PROG, "servers and load generator are pinned apart")
    if not args.json:
        print("in-process decisions...", file=sys.stderr)
    with harness.pinned(harness.SERVER_CPU):
        result: dict[str, Any] = {"micro": micro(args.micro_seconds, args.batches)}
    with harness.state_dir(args.data_dir) as data_dir:
        result["end_to_end"] = end_to_end(args, data_dir)
    result["environment"] = environment()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
