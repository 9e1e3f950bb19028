"""Cost of per-tenant envelope encryption: throughput vs raw AES-GCM, and unwrap calls.

What it measures, in one run, in this process pinned to CPU 0:

1. Encrypt+decrypt round trips of 256 B, 4 KiB and 1 MiB values (ops/s, plaintext MB/s
   and microseconds per round trip), three ways on the same plaintexts:
   - **raw**: ``cryptography``'s ``AESGCM(key).encrypt`` then ``.decrypt`` with a fresh
     12-byte ``os.urandom`` nonce and associated data of the same bytes the envelope
     would bind (``Binding.aad`` of a sample header, ~160 B), no framing at all;
   - **envelope**: ``seal`` then ``open_`` with a ``DataKey`` in hand
     (``tenancy.keys.envelope``: header, key commitment, binding AAD): the format's cost;
   - **TenantKeys**: ``TenantKeys.encrypt(..., purpose=...)`` then ``.decrypt(...)`` with
     a warm data-key cache (``DataKeyCache(ttl=3600)``, longer than the run), a tenant
     context bound as in a request, a SQLite file store and the local key provider: the
     format plus the service's overhead (tenant check, current-key and cache lookups,
     wear check, message counting with its SQLite flush every 1,024 encrypts).
   Reported: each variant's medians, the ratios TenantKeys/raw (aim: >= 0.8 at 4 KiB)
   and envelope/raw, the format and service overheads in microseconds, the unwrap calls
   made during the whole throughput run, and the cost of one message-count flush. When
   the 4 KiB aim is missed (or with ``--profile on``), a cProfile of the 4 KiB TenantKeys
   round trip, sorted by own time.
2. Unwrap calls per 10,000 reads: the provider is wrapped in a counting delegate, a
   writer ``TenantKeys`` seals 100 rows of one tenant and purpose, and a *separate*
   reader ``TenantKeys`` (cold cache, as another process would start) decrypts 10,000
   times, round-robin over the rows:
   (a) TTL 3600 s, system clock: the TTL outlives the run;
   (b) TTL 60 s, an injected ``FrozenClock`` advanced 30 s every 1,000 reads (270 s in
       all): several TTL windows;
   (c) as (b), and halfway (read 5,000) the writer calls ``rotate_data_key`` and seals
       100 more rows under the new version; the reads then alternate over both.
   Each shows the unwraps counted per data-key version next to the expectation, one
   unwrap per data key per TTL window, worked out from the reads' times and versions by
   the cache's own rule (an entry put at ``t`` serves until ``t + ttl``).
3. Versions: Python, cryptography, OpenSSL, SQLAlchemy.

Why: every encrypted column read and write goes through ``TenantKeys``. AES-GCM itself
runs at gigabytes per second, so for small values the cost is what surrounds it (Python
calls, the header and AAD, the cache); the issue's aim is that with a warm cache the
service keeps at least 0.8x of raw AES-GCM's throughput at 4 KiB. Unwrapping is a call
to the key provider (for a customer's KMS, a network round trip with a quota), so the
cache must turn a read-heavy workload into one unwrap per data key per TTL, not one per
read.

How: in-process on CPU 0, nothing else running. Every round trip is checked once before
timing. Each of the nine (size, variant) operations first runs one warm-up batch of
``--batch-seconds``, which also fixes its number of calls per batch; then ``--batches``
batches of all nine run interleaved (sizes and variants in turn), because this
machine's speed drifts by tens of percent between seconds: drift then hits a variant
and its baseline alike. Reported values are medians over batches; ratios and overheads
are medians of per-batch ratios and differences. Uses ``bench/harness.py`` only for
pinning. A script, not a test: nothing asserts.

    .venv/bin/python bench/keys.py [--batches 21] [--batch-seconds 0.1]
        [--profile auto|on|off] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import harness
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, create_engine

from tenancy.clock import SYSTEM_CLOCK, Clock, FrozenClock
from tenancy.context import Principal, TenantContext, bind
from tenancy.events import MemorySink
from tenancy.keys import (
    Binding,
    DataKey,
    DataKeyCache,
    KeyInfo,
    KeyProvider,
    KeyRef,
    LocalKeyProvider,
    RootKey,
    TenantKeys,
    open_,
    seal,
)
from tenancy.keys.envelope import HEADER_BYTES, NONCE_BYTES, header_version
from tenancy.keys.service import COUNT_FLUSH_EVERY

PROG = Path(__file__).name
SIZES = ((256, "256 B"), (4096, "4 KiB"), (1 << 20, "1 MiB"))
VARIANTS = ("raw", "envelope", "TenantKeys")
VARIANT_LABELS = {"raw": "raw AESGCM", "envelope": "seal/open_", "TenantKeys": "TenantKeys"}
AIM_SIZE = 4096
AIM_RATIO = 0.80
PURPOSE = "worklogs.comment"
TABLE, COLUMN = "worklogs", "comment"
THROUGHPUT_TTL = 3600.0
READS = 10_000
ROWS = 100
LONG_TTL = 3600.0
SHORT_TTL = 60.0
ADVANCE_EVERY = 1_000
ADVANCE_S = 30.0


# -- the counting provider ------------------------------------------------------------


class CountingProvider:
    """Delegates every call to ``inner``; counts ``unwrap`` calls per data-key version."""

    def __init__(self, inner: KeyProvider) -> None:
        self._inner = inner
        self.name = inner.name
        self.unwraps: Counter[int] = Counter()
        self.wraps = 0

    def create_key(self, *, tenant_id: str) -> KeyRef:
        return self._inner.create_key(tenant_id=tenant_id)

    def wrap(self, key: KeyRef, dek: bytes, *,
             context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        self.wraps += 1
        return self._inner.wrap(key, dek, context=context)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        self.unwraps[int(context["dek_version"])] += 1
        return self._inner.unwrap(key, wrapped, context=context)

    def rotate(self, key: KeyRef) -> KeyRef:
        return self._inner.rotate(key)

    def describe(self, key: KeyRef) -> KeyInfo:
        return self._inner.describe(key)

    def disable(self, key: KeyRef) -> None:
        self._inner.disable(key)

    def enable(self, key: KeyRef) -> None:
        self._inner.enable(key)

    def destroy(self, key: KeyRef) -> None:
        self._inner.destroy(key)

    @property
    def total(self) -> int:
        return sum(self.unwraps.values())


def service(engine: Engine, provider: KeyProvider, *, ttl: float,
            clock: Clock = SYSTEM_CLOCK) -> TenantKeys:
    return TenantKeys(engine, [provider], cache=DataKeyCache(ttl=ttl), clock=clock,
                      events=MemorySink())


def context(tenant_id: str) -> TenantContext:
    principal = Principal(issuer="bench", tenant_id=tenant_id, subject="alice",
                          scopes=frozenset({"worklogs:read", "worklogs:write"}))
    return TenantContext(tenant_id, "acme", "eu-central-1", principal,
                         f"req-{uuid.uuid4().hex}")


# -- throughput -----------------------------------------------------------------------


def _timed(fn: Callable[[], object], n: int) -> float:
    """Seconds for ``n`` calls of ``fn``."""
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / 1e9


def _calibrate(fn: Callable[[], object], seconds: float) -> int:
    """Calls of ``fn`` that fit in ``seconds`` (this is the warm-up batch)."""
    n = 0
    clock = time.perf_counter
    end = clock() + seconds
    while clock() < end:
        fn()
        n += 1
    return max(1, n)


def round_trips(keys: TenantKeys, tenant_id: str,
                size: int) -> dict[str, Callable[[], bytes]]:
    """The three round trips of one plaintext size, each checked once."""
    plaintext = os.urandom(size)
    binding = Binding(tenant_id, TABLE, COLUMN, f"wl-{uuid.uuid4()}")
    dek = DataKey.from_material(os.urandom(32), 1)
    aead = AESGCM(os.urandom(32))
    # The raw baseline authenticates the same bytes the envelope binds (header included).
    aad = binding.aad(bytes(HEADER_BYTES))
    urandom = os.urandom

    def raw() -> bytes:
        nonce = urandom(NONCE_BYTES)
        return aead.decrypt(nonce, aead.encrypt(nonce, plaintext, aad), aad)

    def envelope() -> bytes:
        return open_(dek, seal(dek, plaintext, binding), binding)

    def tenant_keys() -> bytes:
        return keys.decrypt(keys.encrypt(plaintext, binding, purpose=PURPOSE), binding,
                            purpose=PURPOSE)

    ops = {"raw": raw, "envelope": envelope, "TenantKeys": tenant_keys}
    for name, fn in ops.items():
        if fn() != plaintext:
            raise RuntimeError(f"{name} round trip of {size} B does not return the plaintext")
    return ops


def flush_cost(keys: TenantKeys, tenant_id: str, version: int, n: int = 30) -> float:
    """Median seconds of one message-count flush (a SQLite write transaction)."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        with keys.store.transaction(tenant_id) as conn:
            keys.store.count_messages(conn, tenant_id, PURPOSE, version, 0)
        times.append((time.perf_counter_ns() - start) / 1e9)
    return statistics.median(times)


def profile_round_trip(fn: Callable[[], object], n: int, top: int = 22) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)
    return out.getvalue().strip()


def throughput(engine: Engine, local: KeyProvider, batches: int, batch_seconds: float,
               profile: str) -> dict[str, Any]:
    counting = CountingProvider(local)
    keys = service(engine, counting, ttl=THROUGHPUT_TTL)
    tenant_id = str(uuid.uuid4())
    keys.provision(tenant_id)
    results: dict[str, Any] = {}
    with bind(context(tenant_id)):
        ops = {label: round_trips(keys, tenant_id, size) for size, label in SIZES}
        unwraps_at_start = counting.total
        counts = {label: {v: _calibrate(fn, batch_seconds) for v, fn in by_variant.items()}
                  for label, by_variant in ops.items()}  # warm-up batch, not counted
        gc.collect()
        seconds: dict[str, dict[str, list[float]]] = {
            label: {v: [] for v in VARIANTS} for label in ops}
        for _ in range(batches):
            for label, by_variant in ops.items():
                for v, fn in by_variant.items():
                    seconds[label][v].append(_timed(fn, counts[label][v]))
        unwraps_during = counting.total - unwraps_at_start
        probe = keys.encrypt(b"x", Binding(tenant_id, TABLE, COLUMN, "probe"), purpose=PURPOSE)
        flush_s = flush_cost(keys, tenant_id, header_version(probe))
        rows = []
        for size, label in SIZES:
            us = {v: [s / counts[label][v] * 1e6 for s in seconds[label][v]] for v in VARIANTS}
            row: dict[str, Any] = {"size": size, "label": label, "calls_per_batch":
                                   counts[label], "variants": {}}
            for v in VARIANTS:
                per_op = statistics.median(us[v])
                row["variants"][v] = {"us_per_round_trip": per_op, "ops_per_s": 1e6 / per_op,
                                      "mb_per_s": size / per_op}
            pairs = {"TenantKeys/raw": ("TenantKeys", "raw"), "envelope/raw": ("envelope", "raw"),
                     "TenantKeys/envelope": ("TenantKeys", "envelope")}
            row["ratios"] = {name: statistics.median(b / a for a, b in zip(us[x], us[y],
                                                                          strict=True))
                             for name, (x, y) in pairs.items()}  # throughput ratio x/y
            row["overhead_us"] = {
                "format (envelope - raw)": statistics.median(
                    a - b for a, b in zip(us["envelope"], us["raw"], strict=True)),
                "service (TenantKeys - envelope)": statistics.median(
                    a - b for a, b in zip(us["TenantKeys"], us["envelope"], strict=True)),
            }
            rows.append(row)
        aim_row = next(r for r in rows if r["size"] == AIM_SIZE)
        aim_met = aim_row["ratios"]["TenantKeys/raw"] >= AIM_RATIO
        encrypts = sum(counts[label]["TenantKeys"] for label in counts) * (batches + 1)
        results = {
            "batches": batches, "batch_seconds": batch_seconds,
            "cache_ttl_s": THROUGHPUT_TTL, "purpose": PURPOSE,
            "aad_bytes": len(Binding(tenant_id, TABLE, COLUMN,
                                     f"wl-{uuid.uuid4()}").aad(bytes(HEADER_BYTES))),
            "results": rows,
            "aim": {"size": AIM_SIZE, "ratio": AIM_RATIO,
                    "measured": aim_row["ratios"]["TenantKeys/raw"], "met": aim_met},
            "unwraps_during_run": unwraps_during,
            "tenantkeys_encrypts": encrypts,
            "count_flush": {"every_encrypts": COUNT_FLUSH_EVERY, "ms": flush_s * 1e3,
                            "us_per_encrypt": flush_s * 1e6 / COUNT_FLUSH_EVERY},
            "profile": None,
        }
        if profile == "on" or (profile == "auto" and not aim_met):
            fn = ops[next(label for size, label in SIZES if size == AIM_SIZE)]["TenantKeys"]
            results["profile"] = profile_round_trip(fn, 20_000)
    return results


# -- unwrap calls per 10,000 reads ------------------------------------------------------


def expected_unwraps(reads: list[tuple[float, int]], ttl: float) -> Counter[int]:
    """One unwrap per data key per TTL window, by the cache's rule, from (time, version)."""
    expires: dict[int, float] = {}
    expected: Counter[int] = Counter()
    for now, version in reads:
        if version not in expires or now >= expires[version]:
            expected[version] += 1
            expires[version] = now + ttl
    return expected


def unwrap_scenario(engine: Engine, local: KeyProvider, name: str, description: str, *,
                    ttl: float, frozen: bool, rotate: bool) -> dict[str, Any]:
    clock: Clock = FrozenClock(SYSTEM_CLOCK.now()) if frozen else SYSTEM_CLOCK
    tenant_id = str(uuid.uuid4())
    writer_provider, reader_provider = CountingProvider(local), CountingProvider(local)
    writer = service(engine, writer_provider, ttl=ttl, clock=clock)
    reader = service(engine, reader_provider, ttl=ttl, clock=clock)
    writer.provision(tenant_id)

    def write_rows() -> list[tuple[Binding, bytes, bytes]]:
        rows = []
        for i in range(ROWS):
            binding = Binding(tenant_id, TABLE, COLUMN, f"wl-{uuid.uuid4()}")
            plaintext = f"comment {i} of {name}".encode()
            rows.append((binding, plaintext, writer.encrypt(plaintext, binding,
                                                            purpose=PURPOSE)))
        return rows

    pool = write_rows()
    reads: list[tuple[float, int]] = []
    rotated_at = None
    for i in range(READS):
        if frozen and i and i % ADVANCE_EVERY == 0:
            assert isinstance(clock, FrozenClock)
            clock.advance(ADVANCE_S)
        if rotate and i == READS // 2:
            writer.rotate_data_key(tenant_id, PURPOSE)
            new = write_rows()
            pool = [row for pair in zip(pool, new, strict=True) for row in pair]
            rotated_at = i
        binding, plaintext, ciphertext = pool[i % len(pool)]
        reads.append((clock.timestamp(), header_version(ciphertext)))
        if reader.decrypt(ciphertext, binding, purpose=PURPOSE) != plaintext:
            raise RuntimeError(f"{name}: read {i} does not return its plaintext")
    expected = expected_unwraps(reads, ttl)
    got = reader_provider.unwraps
    versions = sorted(set(expected) | set(got))
    return {
        "scenario": name, "description": description, "ttl_s": ttl,
        "clock": "FrozenClock" if frozen else "system",
        "advance": (f"{ADVANCE_S:g} s every {ADVANCE_EVERY} reads" if frozen else None),
        "reads": READS, "rows_per_version": ROWS, "rotated_at_read": rotated_at,
        "span_s": reads[-1][0] - reads[0][0],
        "reads_per_version": {str(v): n for v, n in sorted(Counter(
            v for _, v in reads).items())},
        "unwraps": {str(v): got[v] for v in versions},
        "expected": {str(v): expected[v] for v in versions},
        "total": sum(got.values()), "expected_total": sum(expected.values()),
        "as_expected": all(got[v] == expected[v] for v in versions),
        "writer": {"encrypts": 2 * ROWS if rotate else ROWS,
                   "wraps": writer_provider.wraps, "unwraps": writer_provider.total},
    }


def unwrap_counts(engine: Engine, local: KeyProvider) -> list[dict[str, Any]]:
    return [
        unwrap_scenario(engine, local, "a", f"TTL {LONG_TTL:g} s > run, 1 data key",
                        ttl=LONG_TTL, frozen=False, rotate=False),
        unwrap_scenario(engine, local, "b", f"TTL {SHORT_TTL:g} s, +{ADVANCE_S:g} s per "
                        f"{ADVANCE_EVERY} reads, 1 data key",
                        ttl=SHORT_TTL, frozen=True, rotate=False),
        unwrap_scenario(engine, local, "c", f"as (b), rotate_data_key at read {READS // 2}",
                        ttl=SHORT_TTL, frozen=True, rotate=True),
    ]


# -- report ---------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """Versions that move these numbers."""
    import importlib.metadata
    import platform

    from cryptography.hazmat.backends.openssl.backend import backend

    found = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("cryptography", "SQLAlchemy"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "absent"
    found["OpenSSL"] = backend.openssl_version_text()
    return found


def report(result: dict[str, Any]) -> None:
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()))
    t = result["throughput"]
    print(f"Encrypt+decrypt round trips in-process on CPU 0: median of {t['batches']} "
          f"interleaved batches of ~{t['batch_seconds']:g} s per operation (after one "
          f"warm-up batch each; ratios = medians of per-batch ratios)")
    print(f"raw = AESGCM encrypt+decrypt, os.urandom nonce, {t['aad_bytes']} B AAD; "
          f"seal/open_ = the envelope with a DataKey in hand; TenantKeys = encrypt+decrypt, "
          f"warm DataKeyCache(ttl={t['cache_ttl_s']:g}), tenant context bound, SQLite store")
    print(f"{'size':7}{'variant':12}{'ops/s':>10}{'MB/s':>9}{'us/op':>10}{'vs raw':>8}")
    for r in t["results"]:
        for i, v in enumerate(VARIANTS):
            m = r["variants"][v]
            ratio = "" if v == "raw" else f"{r['ratios'][f'{v}/raw']:>7.2f}x"
            print(f"{r['label'] if i == 0 else '':7}{VARIANT_LABELS[v]:12}"
                  f"{m['ops_per_s']:>10.0f}{m['mb_per_s']:>9.1f}{m['us_per_round_trip']:>10.2f}"
                  f"{ratio:>8}")
    print("MB/s = plaintext bytes per round trip x round trips/s")
    print(f"{'overhead per round trip, us':30}" + "".join(f"{r['label']:>10}"
                                                          for r in t["results"]))
    for key in t["results"][0]["overhead_us"]:
        print(f"{key:30}" + "".join(f"{r['overhead_us'][key]:>10.2f}" for r in t["results"]))
    aim = t["aim"]
    print(f"aim TenantKeys/raw >= {aim['ratio']:.2f} at 4 KiB, warm cache: "
          f"{aim['measured']:.2f}x, {'met' if aim['met'] else 'NOT met'}")
    f = t["count_flush"]
    print(f"message-count flush: {f['ms']:.2f} ms per SQLite transaction, every "
          f"{f['every_encrypts']} encrypts = {f['us_per_encrypt']:.2f} us per encrypt "
          f"(included in TenantKeys)")
    print(f"unwrap calls during the throughput run: {t['unwraps_during_run']} "
          f"(~{t['tenantkeys_encrypts']} TenantKeys round trips, one data key)")
    print()
    print(f"Unwrap calls per {READS:,} reads: a separate reader TenantKeys (cold cache) "
          f"decrypts {ROWS} rows per data key round-robin; expected = one unwrap per data "
          f"key per TTL window, from the reads' times")
    print(f"{'':4}{'scenario':48}{'span s':>7}{'reads/DEK':>16}{'unwraps':>14}"
          f"{'expected':>14}")
    for s in result["unwraps"]:
        def per_version(d: Mapping[str, int]) -> str:
            return " ".join(f"v{v}:{n}" for v, n in d.items())

        print(f"({s['scenario']}) {s['description']:48}{s['span_s']:>7.0f}"
              f"{per_version(s['reads_per_version']):>16}{per_version(s['unwraps']):>14}"
              f"{per_version(s['expected']):>14}  "
              f"{'as expected' if s['as_expected'] else 'NOT as expected'}")
    writers = ", ".join(f"({s['scenario']}) {s['writer']['wraps']} wraps "
                        f"{s['writer']['unwraps']} unwraps for {s['writer']['encrypts']} "
                        f"encrypts" for s in result["unwraps"])
    print(f"writer side (not counted above): {writers}")
    if t["profile"]:
        print()
        print("cProfile of 20,000 TenantKeys round trips of 4 KiB (sorted by own time):")
        print(t["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=21,
                        help="interleaved measured batches per operation")
    parser.add_argument("--batch-seconds", type=float, default=0.1,
                        help="approximate seconds per batch of one operation")
    parser.add_argument("--profile", choices=("auto", "on", "off"), default="auto",
                        help="cProfile the 4 KiB TenantKeys round trip (auto: when the "
                             "0.8x aim is missed)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.batches < 1 or args.batch_seconds <= 0:
        parser.error("--batches must be at least 1 and --batch-seconds positive")
    if harness.SERVER_CPU not in os.sched_getaffinity(0):
        sys.exit(f"{PROG}: needs CPU {harness.SERVER_CPU} (the benchmark is pinned to it)")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-keys-") as tmp:
        engine = create_engine(f"sqlite:///{tmp}/k.db")
        root = RootKey.load_or_create(Path(tmp) / "root.key")
        local = LocalKeyProvider(Path(tmp) / "keks.json", root=root)
        TenantKeys(engine, [local]).create_schema()
        with harness.pinned(harness.SERVER_CPU):
            if not args.json:
                print("throughput...", file=sys.stderr)
            result["throughput"] = throughput(engine, local, args.batches,
                                              args.batch_seconds, args.profile)
            if not args.json:
                print("unwrap counts...", file=sys.stderr)
            result["unwraps"] = unwrap_counts(engine, local)
        engine.dispose()
    result["environment"] = environment()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
