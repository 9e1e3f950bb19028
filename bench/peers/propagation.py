"""Context propagation against what a developer would write by hand, and the hop it costs.

What it measures, in one run:

1. In process, pinned to one CPU, on the same claims (the context of one request: tenant,
   subject, roles, one scope, request id; ~650-byte tokens), microseconds per **mint +
   verify** of one context token, four ways:

   - **raw Ed25519 sign+verify** (the limit): ``cryptography`` signs the JWS signing
     input of a tenancy token and verifies the signature: no encoding, no claims, no
     checks;
   - **PyJWT by hand**: the claims built from the context, ``jwt.encode`` (EdDSA, the same
     ``kid`` and ``typ`` header), then ``jwt.decode`` with the public key, the audience,
     the issuer and the required claims (``exp``/``iat`` checked by PyJWT): what a
     developer writes by hand, with no replay guard, no delegation ceiling, no claim
     hygiene and no key rotation;
   - **OTel baggage (unsigned)**: ``opentelemetry.baggage.set_baggage`` of the tenant id,
     ``W3CBaggagePropagator`` inject into a header dict and extract back: the cost of
     carrying context *without integrity* (any caller can write any tenant), shown apart:
     it is not a like-for-like peer and never counts as the best peer;
   - **tenancy**: ``ContextTokenMinter.mint`` + ``ContextTokenVerifier.verify`` with the
     in-memory replay guard on: every check runs (``typ``, ``kid`` of a trusted service,
     pinned algorithm, signature, audience, issuer, every claim and its type, version,
     ``iat``/``exp`` with leeway and maximum lifetime, scopes within what the caller may
     delegate, claim hygiene, the ``jti`` seen once).

   Then the two halves apart, with the same variants minus baggage: **verify** alone
   (each call verifies a token it has not seen, from a pool minted before timing: a
   tenancy token verifies once) and **mint** alone. Batches interleave, order turning
   each round (``peerbench``). Target (issue 19): tenancy's verify no slower than PyJWT
   by hand.

2. The hop, over HTTP (``bench/harness.py``, as ``bench/propagation.py``): ``GET /whoami``
   with the same user token through an edge to a backend, both pinned to CPU 0, ``wrk``
   on CPU 1, variants alternating round by round:

   - **plain-hop** (the baseline): an edge with the same ``TenancyMiddleware`` (the user's
     token verified, hot cache) forwards the request with aiohttp exactly as the example
     edge does, but with no context, to a bare Starlette backend answering the same JSON;
   - **context-hop**: the example edge (``tenancy_examples.edge``) mints a context token
     per request and the example worklogs backend verifies it in its ``TenancyMiddleware``
     (single-use: never cached) and answers from the bound context.

   Target (issue 19): context-hop >= 0.80x plain-hop. ``--no-hop`` skips this part.

A script, not a test: nothing asserts. Every variant is checked once before timing.

    .venv/bin/python bench/peers/propagation.py [--rounds 15] [--seconds 0.2] [--json PATH]
        [--no-hop] [--hop-duration S] [--hop-rounds N] [--connections 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # bench/: the harness

import harness
import peerbench

if TYPE_CHECKING:
    from starlette.types import ASGIApp

BENCH = Path(__file__).resolve().parent.parent
LIMIT = "raw Ed25519 sign+verify"
PYJWT = "PyJWT by hand"
BAGGAGE = "OTel baggage (unsigned)"
OURS = "tenancy"
EDGE = "edge"
BACKEND = "worklogs"
READ_SCOPE = "worklogs:read"
BAGGAGE_KEY = "tenant.id"
HOP_VARIANTS = ("plain-hop", "context-hop")
SERVERS = ("edge", "backend", "plain-edge", "plain-backend")
HOP_TARGET = 0.80
PROG = "bench/peers/propagation.py"


def hop_bench() -> ModuleType:
    """``bench/propagation.py`` (its servers and demo state), imported under another name:
    this file is ``propagation`` on ``sys.path`` too."""
    spec = importlib.util.spec_from_file_location("bench_propagation", BENCH / "propagation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- in process -----------------------------------------------------------------------


class Setup:
    """One edge keyring, the minter, a verifier trusting it, a bound-like context."""

    def __init__(self) -> None:
        from tenancy.context import Principal, TenantContext
        from tenancy.identity import DEV_ISSUER, JWKSKeySource
        from tenancy.propagation import (
            ContextTokenMinter,
            ContextTokenVerifier,
            MemoryReplayGuard,
            ServiceKeyring,
            trusted_service,
        )

        self.keyring = ServiceKeyring.generate(EDGE)
        self.minter = ContextTokenMinter(self.keyring)
        self.verifier = ContextTokenVerifier(
            audience=BACKEND,
            services=[
                trusted_service(
                    EDGE,
                    keys=JWKSKeySource(self.keyring.jwks, algorithms=["EdDSA"]),
                    scopes={READ_SCOPE, "worklogs:write"},
                )
            ],
            replay=MemoryReplayGuard(max_entries=2_000_000),  # the run's tokens all live
        )
        self.tenant_id = str(uuid.uuid4())
        principal = Principal(
            issuer=DEV_ISSUER,
            tenant_id=self.tenant_id,
            subject="alice",
            roles=frozenset({"member"}),
            scopes=frozenset({READ_SCOPE, "worklogs:write"}),
        )
        self.ctx = TenantContext(
            self.tenant_id, "acme", "eu-central-1", principal, f"req-{uuid.uuid4().hex}"
        )

    def mint(self) -> str:
        return self.minter.mint(self.ctx, audience=BACKEND, scopes=[READ_SCOPE])

    def round_trip(self) -> None:
        verified = self.verifier.verify(self.mint())
        assert verified.principal.tenant_id == self.tenant_id


def raw_ed25519(setup: Setup) -> tuple[Callable[[], bytes], Callable[[], None]]:
    """Sign and verify the signing input of a tenancy token with the same key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    message = setup.mint().rsplit(".", 1)[0].encode()
    key = setup.keyring.active.private_key
    assert isinstance(key, Ed25519PrivateKey)
    public = key.public_key()
    signature = key.sign(message)

    def sign() -> bytes:
        return key.sign(message)

    def verify() -> None:
        public.verify(signature, message)

    return sign, verify


def by_hand(setup: Setup, ttl: int = 60) -> tuple[Callable[[], str], Callable[[str], object]]:
    """PyJWT as a developer would use it for the same context and claims."""
    import jwt

    from tenancy.propagation.tokens import CONTEXT_TOKEN_TYPE, REQUIRED_CLAIMS

    active = setup.keyring.active
    private, kid, ctx = active.private_key, active.kid, setup.ctx
    public = private.public_key()
    headers = {"kid": kid, "typ": CONTEXT_TOKEN_TYPE}
    required = list(REQUIRED_CLAIMS)

    def encode() -> str:
        now = int(time.time())
        principal = ctx.principal
        claims = {
            "ver": 1,
            "iss": EDGE,
            "aud": BACKEND,
            "sub": principal.subject,
            "piss": principal.issuer,
            "kind": principal.kind.value,
            "roles": sorted(principal.roles),
            "aal": int(principal.assurance),
            "tid": ctx.tenant_id,
            "region": ctx.region,
            "scope": READ_SCOPE,
            "rid": ctx.request_id,
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, private, algorithm="EdDSA", headers=headers)

    def decode(token: str) -> object:
        return jwt.decode(
            token,
            public,
            algorithms=["EdDSA"],
            audience=BACKEND,
            issuer=EDGE,
            options={"require": required},
        )

    return encode, decode


def baggage_round_trip(tenant_id: str) -> Callable[[], object]:
    """OpenTelemetry baggage: set, inject into headers, extract, read. No integrity."""
    from opentelemetry import baggage
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    propagator = W3CBaggagePropagator()

    def round_trip() -> object:
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=baggage.set_baggage(BAGGAGE_KEY, tenant_id))
        return baggage.get_baggage(BAGGAGE_KEY, propagator.extract(carrier))

    return round_trip


def pool_size(setup: Setup, rounds: int, seconds: float) -> int:
    """Tokens enough for the calibration and ``rounds`` verify batches, even if a verify
    ran at twice the raw signature check's speed (a floor with room for drift)."""
    _, raw_verify = raw_ed25519(setup)
    started = time.perf_counter()
    for _ in range(200):
        raw_verify()
    fastest = (time.perf_counter() - started) / 200 / 2
    batch = max(0.2, seconds)  # peerbench sizes batches for at least its 0.2 s warm-up
    return int((rounds + 1.5) * batch / fastest) + 100


def token_pool(mint: Callable[[], str], count: int) -> Iterator[str]:
    """``count`` fresh tokens, minted now (before any timing), handed out once each."""
    tokens = [mint() for _ in range(count)]

    def drain() -> Iterator[str]:
        yield from tokens
        raise RuntimeError(f"token pool of {count} exhausted: raise its margin")

    return drain()


def in_process(rounds: int, seconds: float) -> list[dict[str, Any]]:
    setup = Setup()
    raw_sign, raw_verify = raw_ed25519(setup)
    encode, decode = by_hand(setup)
    baggage = baggage_round_trip(setup.tenant_id)
    # Each variant once before timing: the right answer, not an error page's speed.
    setup.round_trip()
    if decode(encode())["tid"] != setup.tenant_id:  # type: ignore[index]
        raise RuntimeError("PyJWT by hand lost the tenant")
    if baggage() != setup.tenant_id:
        raise RuntimeError("baggage lost the tenant")

    def limit() -> None:
        raw_sign()
        raw_verify()

    sections = []
    with harness.pinned(harness.SERVER_CPU):
        both = peerbench.interleave(
            {
                LIMIT: limit,
                PYJWT: lambda: decode(encode()),
                BAGGAGE: baggage,
                OURS: setup.round_trip,
            },
            rounds=rounds,
            seconds=seconds,
        )
        signed = peerbench.Result({n: both.seconds[n] for n in (LIMIT, PYJWT, OURS)})
        sections.append(
            peerbench.report("context token mint+verify (signed)", signed, limit=LIMIT, ours=OURS)
        )
        unsigned = peerbench.Result({n: both.seconds[n] for n in (LIMIT, BAGGAGE, OURS)})
        figures = peerbench.report(
            "carrying the tenant id WITHOUT integrity (not a like-for-like peer)",
            peerbench.Result({n: unsigned.seconds[n] for n in (LIMIT, BAGGAGE)}),
            limit=LIMIT,
            ours=BAGGAGE,
        )
        figures["tenancy_vs_baggage"] = unsigned.ratio(OURS, BAGGAGE)
        print(f"  {OURS} vs {BAGGAGE}: {figures['tenancy_vs_baggage']:.2f}x")
        sections.append(figures)

        # Both verify a token they have not seen, as a backend does: from pools minted
        # before timing (PyJWT's with an hour to live, since it checks exp and the pool
        # outlives a minute on a long run; tenancy's with its usual minute).
        count = pool_size(setup, rounds, seconds)
        theirs = token_pool(by_hand(setup, ttl=3600)[0], count)
        ours = token_pool(setup.mint, count)
        verify = peerbench.interleave(
            {
                "raw Ed25519 verify": raw_verify,
                PYJWT: lambda: decode(next(theirs)),
                OURS: lambda: setup.verifier.verify(next(ours)),
            },
            rounds=rounds,
            seconds=seconds,
        )
        figures = peerbench.report(
            "verify alone (a fresh token per call; tenancy's replay guard on)",
            verify,
            limit="raw Ed25519 verify",
            ours=OURS,
        )
        met = figures["variants"][OURS]["vs_best_peer"] >= 1.0
        print(f"  target: verify no slower than {PYJWT}: {'met' if met else 'NOT met'}")
        sections.append(figures)

        mint = peerbench.interleave(
            {"raw Ed25519 sign": raw_sign, PYJWT: encode, OURS: setup.mint},
            rounds=rounds,
            seconds=seconds,
        )
        sections.append(peerbench.report("mint alone", mint, limit="raw Ed25519 sign", ours=OURS))
    return sections


# -- the hop over HTTP: server side (``--serve``) --------------------------------------


def plain_backend() -> ASGIApp:
    """A bare Starlette backend answering ``/whoami`` with the same shape, no context."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    answer = {
        "tenant": "acme",
        "tenant_id": str(uuid.uuid4()),
        "subject": "alice",
        "scopes": [READ_SCOPE],
        "mfa": False,
        "caller": None,
        "request_id": uuid.uuid4().hex,
    }

    async def whoami(request: Request) -> Response:
        return JSONResponse(answer)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/whoami", whoami), Route("/healthz", healthz)])


def plain_edge(data_dir: Path, upstream: str) -> ASGIApp:
    """The example edge's request path with no context: the same middleware verifying the
    user, the same aiohttp session and forwarding, no token minted, none sent."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    import aiohttp
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from tenancy.deployment import open_engine
    from tenancy.errors import DownstreamUnavailable
    from tenancy.middleware import TenancyMiddleware
    from tenancy.problems import exception_handlers
    from tenancy.tenants import TenantRegistry
    from tenancy_examples.edge.app import (
        FORWARDED_REQUEST_HEADERS,
        FORWARDED_RESPONSE_HEADERS,
        PUBLIC_PATHS,
        bounded_body,
    )
    from tenancy_examples.edge.backends import _closing_after_5xx

    shared = hop_bench()
    settings = shared.bench_settings(data_dir)
    registry = TenantRegistry(open_engine(settings), cache_ttl=shared.REGISTRY_CACHE_TTL)
    sessions: list[aiohttp.ClientSession] = []

    async def forward(request: Request) -> Response:
        if not sessions:
            sessions.append(
                aiohttp.ClientSession(
                    upstream,
                    timeout=aiohttp.ClientTimeout(total=10.0),
                    response_class=_closing_after_5xx(),
                )
            )
        headers = {
            k: v for k in FORWARDED_REQUEST_HEADERS if (v := request.headers.get(k)) is not None
        }
        query = request.url.query
        target = f"{request.url.path}?{query}" if query else request.url.path
        try:
            async with sessions[0].request(
                request.method,
                target,
                data=await bounded_body(request),
                headers=headers,
                skip_auto_headers=("Content-Type",),
            ) as answer:
                lowered = {name.lower(): value for name, value in answer.headers.items()}
                body = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownstreamUnavailable("backend did not answer") from exc
        kept = {k: v for k in FORWARDED_RESPONSE_HEADERS if (v := lowered.get(k)) is not None}
        return Response(body, status_code=answer.status, headers=kept)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for session in sessions:
            await session.close()

    routes = [Route("/healthz", healthz), Route("/whoami", forward, methods=["GET"])]
    middleware = [
        Middleware(
            TenancyMiddleware,
            verifier=shared.user_verifier(settings),
            tenants=registry,
            region=settings.region,
            public_paths=PUBLIC_PATHS,
            routes=routes,
        )
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
    )


def build_server(kind: str, data_dir: Path, upstream: str | None) -> ASGIApp:
    if kind == "plain-backend":
        return plain_backend()
    if kind == "plain-edge":
        if upstream is None:
            raise SystemExit("--serve plain-edge needs --upstream")
        return plain_edge(data_dir, upstream)
    app: ASGIApp = hop_bench().build_server(kind, data_dir, "EdDSA", upstream)
    return app


# -- the hop over HTTP: driver side ----------------------------------------------------


def spawn(kind: str, port: int, data_dir: Path, upstream: str | None = None) -> harness.Server:
    args = ["--serve", kind, "--port", str(port), "--data-dir", str(data_dir)]
    if upstream is not None:
        args += ["--upstream", upstream]
    return harness.spawn(harness.self_command(__file__, *args))


def check_hop(ports: dict[str, int], token: str) -> None:
    """Both hops answer for acme/alice; only the context hop says who called; the
    context backend refuses the user's own token and a request with none."""
    for name, caller in (("plain-edge", None), ("edge", EDGE)):
        status, body = harness.http_get(ports[name], "/whoami", harness.bearer(token))
        answer = json.loads(body) if status == 200 else {}
        if answer.get("tenant") != "acme" or answer.get("subject") != "alice":
            raise RuntimeError(f"{name}: {status} {body!r}")
        if answer.get("caller") != caller:
            raise RuntimeError(f"{name}: caller {answer.get('caller')!r}, not {caller!r}")
        if harness.http_get(ports[name], "/whoami")[0] != 401:
            raise RuntimeError(f"{name} answered without a user token")
    for headers in (harness.bearer(token), {}):
        if harness.http_get(ports["backend"], "/whoami", headers)[0] != 401:
            raise RuntimeError("the context backend accepted a request without a context token")


def hop(args: Any, token_us: float) -> dict[str, Any]:
    """The two hops under wrk; ``token_us`` is raw Ed25519 sign+verify from the in-process
    part, for the ceiling any signed context could reach on this core."""
    wrk = harness.ensure_wrk(PROG)
    shared = hop_bench()
    duration = args.hop_duration or max(1, round(args.seconds * 25))
    rounds = args.hop_rounds or min(args.rounds, 5)
    load = harness.Load(duration, args.hop_warmup, rounds, args.connections)
    with harness.state_dir(args.data_dir) as data_dir:
        token, _ = shared.prepare_state(data_dir, "EdDSA")
        ports = {name: harness.free_port() for name in SERVERS}
        with harness.running() as servers:
            for edge, backend in (("edge", "backend"), ("plain-edge", "plain-backend")):
                servers.append(spawn(backend, ports[backend], data_dir))
                upstream = f"http://{harness.HOST}:{ports[backend]}"
                servers.append(spawn(edge, ports[edge], data_dir, upstream))
            for proc, name in zip(servers, SERVERS, strict=True):
                harness.wait_ready(proc, ports[name])
            check_hop(ports, token)
            targets = {"plain-hop": ports["plain-edge"], "context-hop": ports["edge"]}
            runs = harness.alternate(
                wrk, targets, "/whoami", load, headers=harness.bearer(token), progress=False
            )
    medians = harness.medians(runs, HOP_VARIANTS)
    # Per round, as peerbench does: drift hits both hops of a round alike.
    ratio = statistics.median(
        context.rps / plain.rps for plain, context in zip(runs[0::2], runs[1::2], strict=True)
    )
    print(
        f"\nedge -> backend hop, GET /whoami, {load.connections} connections, median of "
        f"{load.rounds} x {load.duration} s rounds (warm-up {load.warmup} s each), edge and "
        f"backend both on CPU 0, wrk on CPU 1"
    )
    print(f"  {harness.TABLE_HEADER}{'CPU0 us/req':>13}{'vs plain':>10}")
    for variant in HOP_VARIANTS:
        m = medians[variant]
        to_plain = 1.0 if variant == "plain-hop" else ratio
        print(f"  {harness.table_row(variant, m)}{1e6 / m['rps']:>13.0f}{to_plain:>9.2f}x")
    plain_us = 1e6 / medians["plain-hop"]["rps"]
    ceiling = plain_us / (plain_us + token_us)
    print(
        f"  ceiling for any signed context on this core: plain-hop + raw Ed25519 sign+verify "
        f"({token_us:.0f} us, above) = {ceiling:.2f}x plain-hop"
    )
    met = "met" if ratio >= HOP_TARGET else "NOT met"
    print(f"  target: context-hop >= {HOP_TARGET:.2f}x plain-hop: {met}")
    return {
        "title": "edge -> backend hop",
        **load.describe("/whoami"),
        "medians": medians,
        "context_vs_plain": ratio,
        "signed_ceiling_vs_plain": ceiling,
        "runs": [asdict(r) for r in runs],
    }


def main() -> None:
    parser = peerbench.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--no-hop", action="store_true", help="skip the HTTP hop")
    parser.add_argument(
        "--hop-duration",
        type=int,
        help="seconds per measured wrk run (default: 25 x --seconds, at least 1)",
    )
    parser.add_argument(
        "--hop-rounds", type=int, help="wrk rounds per hop (default: --rounds, at most 5)"
    )
    parser.add_argument("--hop-warmup", type=int, default=1, help="seconds of wrk warm-up")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--data-dir", type=Path, help="hop state directory (default: temp)")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        harness.serve(build_server(args.serve, args.data_dir, args.upstream), args.port)
        return
    harness.require_cpus(PROG, "the in-process part runs on CPU 0, wrk on CPU 1")
    print(peerbench.environment())
    sections = in_process(args.rounds, args.seconds)
    if not args.no_hop:
        sections.append(hop(args, sections[0]["variants"][LIMIT]["seconds_per_op"] * 1e6))
    peerbench.write_json(args.json, sections)


if __name__ == "__main__":
    main()
