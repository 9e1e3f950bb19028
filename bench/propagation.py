"""Cost of tenant-context propagation: context-token mint/verify, and edge -> backend hop.

What it measures, in one run:

1. In-process microbenchmarks, per algorithm (EdDSA, ES256): microseconds per
   ``ContextTokenMinter.mint`` and per ``ContextTokenVerifier.verify`` of a context token
   (median of several batches), next to the raw ``cryptography`` sign and verify of the
   same key on a message of the same size (the token's JWS signing input), and the
   ratio library/raw; batches of the four operations are interleaved so that drift
   affects them alike. Target: < 100 us each for mint and verify. ``verify`` always gets a
   fresh token (minted before the timed loop), with the replay guard on, exactly as a
   backend sees them; nothing is switched off.
2. End-to-end under ``wrk``: ``GET /whoami`` with the same user access token,
   (a) **direct**: the worklogs app served alone, authenticating the user token itself
       (``TokenVerifier``, hot verified-token cache);
   (b) **via edge**: the edge app verifies the user token (hot cache), mints a context
       token and forwards ``GET /whoami`` over aiohttp to a worklogs backend on another
       port that accepts only context tokens from the edge (a full verification per
       request: context tokens are single-use and never cached);
   and the throughput ratio (b)/(a). ``/whoami`` does no database work.

Why: the propagation design puts an asymmetric signature and its verification on every
service-to-service call. Each costs tens of microseconds of pure crypto, more with JWS
encoding and claim checks, while a cached edge request costs about 70 us in total, so the
hop can easily cost more than the request itself. This bench shows where that time goes:
library overhead vs. raw crypto per token, and, end to end, the CPU one hop costs per
request and how much of it is the token (mint + verify) rather than the second HTTP
exchange (the edge's aiohttp client and the backend's own request handling). Versions of
the libraries on that path are printed with the results, since they move the numbers.

How: microbenchmarks run first, in this process pinned to CPU 0, with nothing else
running. For the end-to-end part every server is this file re-invoked (``--serve
direct|edge|backend``) under uvicorn (uvloop + httptools, one worker, log level warning)
pinned to CPU 0 -- in (b) *both* the edge and the backend share CPU 0, so (a) and (b) get
the same CPU budget and the ratio is the price of the hop; ``wrk --latency`` is pinned to
CPU 1. State is a throw-away data directory prepared like the demo
(``tenancy_examples.demo_state.prepare``: SQLite, dev issuer, edge keyring); the tenant registry
is built with ``cache_ttl=3600`` so no database read is on the hot path. Before
measuring, sanity requests must return 200 for tenant ``acme`` (and ``"caller": "edge"``
through the edge), 401 without a token, and the backend must refuse the user's token.
Runs alternate direct, via-edge, direct, ... and each variant reports the median of its
rounds. That plumbing (pinning, servers, wrk, medians) is ``bench/harness.py``, shared
with ``edge.py``. A script, not a test: nothing asserts.

    .venv/bin/python bench/propagation.py [--duration 10] [--rounds 4] [--json]
        [--e2e-algorithm EdDSA|ES256] [--connections 32] [--batches 15] [--batch-size 300]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from tenancy.identity import TokenVerifier
    from tenancy.settings import Settings

ALGORITHMS = ("EdDSA", "ES256")
TARGET_US = 100.0
TENANT_SLUG = "acme"
SUBJECT = "alice"
EDGE = "edge"
BACKEND = "worklogs"
READ_SCOPE = "worklogs:read"
REGISTRY_CACHE_TTL = 3600.0
PATH = "/whoami"
VARIANTS = ("direct", "via-edge")
SERVERS = ("direct", "edge", "backend")
PROG = Path(__file__).name


# -- shared state ---------------------------------------------------------------------


def bench_settings(data_dir: Path) -> Settings:
    """Settings over ``data_dir`` only (SQLite there; environment variables ignored)."""
    from tenancy.settings import Settings

    return Settings.from_env({}, data_dir=data_dir)


# -- server side (``--serve``) --------------------------------------------------------


def user_verifier(settings: Settings) -> TokenVerifier:
    """The verifier of the user's access token (dev issuer, EdDSA), as the edge and the
    direct worklogs use it."""
    from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
    from tenancy.identity.dev import JWKS_FILE

    keys = JWKSKeySource.from_file(settings.data_dir / JWKS_FILE, algorithms=["EdDSA"])
    return TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=settings.audience, keys=keys, algorithms=["EdDSA"])]
    )


def build_server(kind: str, data_dir: Path, algorithm: str, upstream: str | None) -> ASGIApp:
    """One of the three servers, over the state ``prepare_state`` wrote in ``data_dir``."""
    from tenancy.authn import Authenticator
    from tenancy.deployment import open_engine
    from tenancy.identity import JWKSKeySource
    from tenancy.propagation import ContextTokenVerifier, ServiceKeyring, trusted_service
    from tenancy.tenants import TenantRegistry
    from tenancy_examples.demo_state import edge_jwks_path, edge_keyring_dir
    from tenancy_examples.edge.app import create_app as create_edge
    from tenancy_examples.worklogs.app import READ, WRITE
    from tenancy_examples.worklogs.app import create_app as create_worklogs
    from tenancy_examples.worklogs.store import WorklogStore

    settings = bench_settings(data_dir)
    engine = open_engine(settings)
    registry = TenantRegistry(engine, cache_ttl=REGISTRY_CACHE_TTL)

    if kind == "edge":
        if upstream is None:
            raise SystemExit("--serve edge needs --upstream")
        keyring = ServiceKeyring.load_or_create(edge_keyring_dir(settings), EDGE)
        return create_edge(
            verifier=user_verifier(settings),
            tenants=registry,
            region=settings.region,
            keyring=keyring,
            worklogs_url=upstream,
        )
    verifier: Authenticator
    if kind == "backend":
        edge_keys = JWKSKeySource.from_file(edge_jwks_path(settings), algorithms=[algorithm])
        verifier = ContextTokenVerifier(
            audience=BACKEND,
            services=[
                trusted_service(EDGE, keys=edge_keys, scopes={READ, WRITE}, algorithms=[algorithm])
            ],
        )
    else:
        verifier = user_verifier(settings)
    return create_worklogs(
        store=WorklogStore(engine), verifier=verifier, tenants=registry, region=settings.region
    )


# -- microbenchmarks ------------------------------------------------------------------


def _timed(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000.0


def micro(algorithm: str, batches: int, size: int) -> dict[str, Any]:
    """Mint and verify of one algorithm, and the raw crypto of the same key and size."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tenancy.context import Principal, TenantContext
    from tenancy.identity import DEV_ISSUER, JWKSKeySource
    from tenancy.propagation import (
        ContextTokenMinter,
        ContextTokenVerifier,
        ServiceKeyring,
        trusted_service,
    )

    keyring = ServiceKeyring.generate(EDGE, algorithm=algorithm)
    minter = ContextTokenMinter(keyring)
    verifier = ContextTokenVerifier(
        audience=BACKEND,
        services=[
            trusted_service(
                EDGE,
                keys=JWKSKeySource(keyring.jwks, algorithms=[algorithm]),
                scopes={READ_SCOPE},
                algorithms=[algorithm],
            )
        ],
    )  # check_replay=True (default): every verified token below is fresh
    tenant_id = str(uuid.uuid4())
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=tenant_id,
        subject=SUBJECT,
        roles=frozenset({"member"}),
        scopes=frozenset({READ_SCOPE, "worklogs:write"}),
    )
    ctx = TenantContext(
        tenant_id, TENANT_SLUG, "eu-central-1", principal, f"req-{uuid.uuid4().hex}"
    )

    def mint() -> str:
        return minter.mint(ctx, audience=BACKEND, scopes=[READ_SCOPE])

    sample = mint()
    if verifier.verify(sample).principal.tenant_id != tenant_id:  # also loads the JWKS
        raise RuntimeError(f"{algorithm}: a minted token does not verify to its tenant")
    message = sample.rsplit(".", 1)[0].encode()  # the JWS signing input that gets signed
    key = keyring.active.private_key
    public = key.public_key()
    raw_sign: Callable[[], bytes]
    raw_verify: Callable[[], None]
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(message)

        def raw_sign() -> bytes:
            return key.sign(message)

        def raw_verify() -> None:
            public.verify(signature, message)
    else:
        ecdsa = ec.ECDSA(hashes.SHA256())
        signature = key.sign(message, ecdsa)

        def raw_sign() -> bytes:
            return key.sign(message, ecdsa)

        def raw_verify() -> None:
            public.verify(signature, message, ecdsa)

    def verify_batch() -> float:
        tokens = [mint() for _ in range(size)]  # fresh tokens, minted outside the timing
        start = time.perf_counter_ns()
        for token in tokens:
            verifier.verify(token)
        return (time.perf_counter_ns() - start) / size / 1000.0

    # Batches of the four operations are interleaved, so drift (this machine's CPU speed
    # wanders by tens of percent between seconds) hits the library and its baseline alike;
    # the ratio is the median of per-batch ratios.
    ops: dict[str, Callable[[], float]] = {
        "mint": lambda: _timed(mint, size),
        "raw_sign": lambda: _timed(raw_sign, size),
        "verify": verify_batch,
        "raw_verify": lambda: _timed(raw_verify, size),
    }
    for run_batch in ops.values():
        run_batch()  # warm-up batch, not counted
    gc.collect()
    samples: dict[str, list[float]] = {op: [] for op in ops}
    for _ in range(batches):
        for op, run_batch in ops.items():
            samples[op].append(run_batch())
    result: dict[str, Any] = {
        "algorithm": algorithm,
        "token_bytes": len(sample),
        "signing_input_bytes": len(message),
        **{f"{op}_us": statistics.median(values) for op, values in samples.items()},
    }
    for op, raw in (("mint", "raw_sign"), ("verify", "raw_verify")):
        result[f"{op}_ratio"] = statistics.median(
            a / b for a, b in zip(samples[op], samples[raw], strict=True)
        )
        result[f"{op}_target_met"] = result[f"{op}_us"] < TARGET_US
    result["samples_us"] = samples
    return result


# -- end to end: driver side ----------------------------------------------------------


def prepare_state(data_dir: Path, algorithm: str) -> tuple[str, str]:
    """Prepare the demo state; return a user token for ``acme`` and the edge's algorithm."""
    from tenancy.identity import DevIssuer
    from tenancy.propagation import ServiceKeyring
    from tenancy_examples.demo_state import EDGE as DEMO_EDGE
    from tenancy_examples.demo_state import edge_keyring_dir, prepare

    logging.getLogger("tenancy.demo").setLevel(logging.ERROR)  # the "SQLite" warning
    settings = bench_settings(data_dir)
    # Created before prepare() so that it picks this algorithm (prepare reopens it).
    keyring = ServiceKeyring.load_or_create(
        edge_keyring_dir(settings), DEMO_EDGE, algorithm=algorithm
    )
    registry = prepare(settings)
    tenant = registry.get_by_slug(TENANT_SLUG)
    token = DevIssuer.load_or_create(settings.data_dir).mint(
        tenant_id=tenant.id,
        subject=SUBJECT,
        audience=settings.audience,
        scopes=[READ_SCOPE],
        ttl=3600,
    )
    return token, keyring.algorithm


def spawn_server(
    kind: str, port: int, data_dir: Path, algorithm: str, upstream: str | None = None
) -> harness.Server:
    args = [
        "--serve",
        kind,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--e2e-algorithm",
        algorithm,
    ]
    if upstream is not None:
        args += ["--upstream", upstream]
    return harness.spawn(harness.self_command(__file__, *args))


def _whoami(name: str, port: int, token: str) -> dict[str, Any]:
    status, body = harness.http_get(port, PATH, harness.bearer(token))
    if status != 200:
        raise RuntimeError(f"{name} with the user token: {status} {body!r}")
    answer: dict[str, Any] = json.loads(body)
    if answer.get("tenant") != TENANT_SLUG or answer.get("subject") != SUBJECT:
        raise RuntimeError(f"{name}: wrong context {answer!r}")
    return answer


def sanity_check(ports: dict[str, int], token: str) -> None:
    """Both variants take the real path; the backend trusts nothing but the edge."""
    if (caller := _whoami("direct", ports["direct"], token).get("caller")) is not None:
        raise RuntimeError(f"direct: expected no caller, got {caller!r}")
    if (caller := _whoami("via edge", ports["edge"], token).get("caller")) != EDGE:
        raise RuntimeError(f"via edge: expected caller {EDGE!r}, got {caller!r}")
    for name in SERVERS:
        status, _ = harness.http_get(ports[name], PATH)
        if status != 401:
            raise RuntimeError(f"{name} without a token: expected 401, got {status}")
    status, _ = harness.http_get(ports["backend"], PATH, harness.bearer(token))
    if status != 401:
        raise RuntimeError(f"backend with the user's own token: expected 401, got {status}")


def end_to_end(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    wrk = harness.ensure_wrk(PROG)
    token, algorithm = prepare_state(data_dir, args.e2e_algorithm)
    if algorithm != args.e2e_algorithm:
        raise RuntimeError(
            f"the edge keyring in {data_dir} signs with {algorithm}, "
            f"not {args.e2e_algorithm}; use another --data-dir"
        )
    ports = {name: harness.free_port() for name in SERVERS}
    load = harness.Load.from_args(args)
    with harness.running() as servers:
        servers.append(spawn_server("direct", ports["direct"], data_dir, algorithm))
        servers.append(spawn_server("backend", ports["backend"], data_dir, algorithm))
        servers.append(
            spawn_server(
                "edge",
                ports["edge"],
                data_dir,
                algorithm,
                upstream=f"http://127.0.0.1:{ports['backend']}",
            )
        )
        for proc, name in zip(servers, SERVERS, strict=True):
            harness.wait_ready(proc, ports[name])
        sanity_check(ports, token)
        target = {"direct": ports["direct"], "via-edge": ports["edge"]}
        runs = harness.alternate(
            wrk, target, PATH, load, headers=harness.bearer(token), progress=not args.json
        )
    medians = harness.medians(runs, VARIANTS)
    return {
        **load.describe(PATH),
        "context_token_algorithm": algorithm,
        "cpus": {
            "direct": "worklogs on CPU 0",
            "via-edge": "edge + worklogs both on CPU 0",
            "wrk": "CPU 1",
        },
        "registry_cache_ttl_s": REGISTRY_CACHE_TTL,
        "medians": medians,
        "runs": [asdict(r) for r in runs],
        "ratio": medians["via-edge"]["rps"] / medians["direct"]["rps"],
        "cpu0_us_per_request": {v: 1e6 / m["rps"] for v, m in medians.items()},
    }


# -- report ---------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """Versions that move these numbers; ``sniffio`` matters to httpx (see the report)."""
    import importlib.metadata
    import importlib.util
    import platform

    found = {"python": platform.python_version()}
    for dist in ("cryptography", "PyJWT", "aiohttp", "httpx", "httpcore", "anyio", "uvicorn"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "absent"
    found["sniffio"] = "present" if importlib.util.find_spec("sniffio") else "absent"
    return found


def report(result: dict[str, Any]) -> None:
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()))
    m = result["micro"]
    first = m["results"][0]
    print(
        f"Context tokens in-process on CPU 0: median of {m['batches']} batches x "
        f"{m['batch_size']} ops (after one warm-up batch; the four operations' batches "
        f"interleaved; ratio = median of per-batch ratios); ~{first['token_bytes']} B tokens, "
        f"raw baseline signs/verifies a same-size message "
        f"({first['signing_input_bytes']} B signing input) with the same key"
    )
    print("verify: a fresh token every call (minted outside the timed loop), replay guard on")
    print(
        f"{'alg':7}{'op':8}{'tenancy us':>12}{'raw us':>9}{'ratio':>8}   "
        f"target < {TARGET_US:.0f} us"
    )
    for r in m["results"]:
        for op, raw in (("mint", "raw_sign"), ("verify", "raw_verify")):
            met = "met" if r[f"{op}_target_met"] else "NOT met"
            print(
                f"{r['algorithm']:7}{op:8}{r[f'{op}_us']:>12.1f}{r[f'{raw}_us']:>9.1f}"
                f"{r[f'{op}_ratio']:>7.2f}x   {met}"
            )
    print()
    e = result["end_to_end"]
    med: dict[str, dict[str, float]] = e["medians"]
    print(
        f"GET {e['path']} on loopback with one user token, {e['connections']} connections, "
        f"median of {e['rounds']} x {e['duration_s']} s rounds (warm-up {e['warmup_s']} s "
        f"each){', rounds alternate' if e['rounds'] > 1 else ', ONE round: no alternation'}"
    )
    print(
        "same CPU budget: direct = worklogs alone on CPU 0; via edge = edge AND worklogs "
        "both on CPU 0; wrk on CPU 1"
    )
    print(
        f"direct: user token verified by worklogs (hot token cache); via edge: user token "
        f"at the edge (hot cache), then a fresh {e['context_token_algorithm']} context "
        f"token per request, fully verified by worklogs (single-use, never cached); "
        f"tenant registry cache_ttl={e['registry_cache_ttl_s']:.0f} s"
    )
    print(f"{harness.TABLE_HEADER}{'CPU0 us/req':>13}")
    for variant, v in med.items():
        print(f"{harness.table_row(variant, v)}{e['cpu0_us_per_request'][variant]:>13.0f}")
    print(
        f"ratio via-edge/direct throughput: {e['ratio']:.2f}; p50 latency: "
        f"{med['via-edge']['p50_ms'] / med['direct']['p50_ms']:.2f}x "
        f"(CPU0 us/req = 1e6 / req/s, CPU 0 being saturated)"
    )
    hop = result["hop"]
    print(
        f"the hop costs ~{hop['hop_us']:.0f} us of CPU 0 per request; the context token's "
        f"{hop['algorithm']} mint + verify (microbenchmark above) is "
        f"{hop['token_us']:.0f} us of it ({hop['token_share']:.0%}), the rest is the second "
        f"HTTP exchange (aiohttp client in the edge, second server)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_options(
        parser, SERVERS, rounds=4, rounds_help="rounds per variant (>= 2 to cancel drift)"
    )
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=15, help="microbenchmark batches")
    parser.add_argument(
        "--batch-size", type=int, default=300, help="operations per microbenchmark batch"
    )
    parser.add_argument(
        "--e2e-algorithm",
        choices=ALGORITHMS,
        default="EdDSA",
        help="the edge's context-token algorithm end to end (default EdDSA, as in the demo)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.serve:
        harness.serve(
            build_server(args.serve, args.data_dir, args.e2e_algorithm, args.upstream), args.port
        )
        return
    if args.rounds < 1 or args.batches < 1 or args.batch_size < 1:
        parser.error("--rounds, --batches and --batch-size must be at least 1")
    if args.rounds < 2:
        print(
            "note: --rounds 1 does not alternate variants; drift is not cancelled", file=sys.stderr
        )
    harness.require_cpus(PROG, "servers and load generator are pinned apart")
    with harness.pinned(harness.SERVER_CPU):
        micro_results = [micro(alg, args.batches, args.batch_size) for alg in ALGORITHMS]
    result: dict[str, Any] = {
        "micro": {
            "batches": args.batches,
            "batch_size": args.batch_size,
            "target_us": TARGET_US,
            "verify": "fresh token per call, replay guard on (check_replay=True)",
            "results": micro_results,
        },
    }
    with harness.state_dir(args.data_dir) as data_dir:
        e2e = end_to_end(args, data_dir)
    result["end_to_end"] = e2e
    token = next(r for r in micro_results if r["algorithm"] == e2e["context_token_algorithm"])
    per_request = e2e["cpu0_us_per_request"]
    hop_us = per_request["via-edge"] - per_request["direct"]
    token_us = token["mint_us"] + token["verify_us"]
    result["hop"] = {
        "algorithm": token["algorithm"],
        "hop_us": hop_us,
        "token_us": token_us,
        "token_share": token_us / hop_us if hop_us > 0 else float("nan"),
    }
    result["environment"] = environment()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
