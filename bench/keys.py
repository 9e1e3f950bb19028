"""Cost of per-tenant envelope encryption: throughput vs raw AES-GCM, unwrap calls, and
the key-state check (with Redis: how fast a key change reaches another process).

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
3. The key-state check on every use (``tenancy.keys.state``): one ``TenantKeys``, one
   tenant and row, warm 256 B round trips, its ``state`` swapped per batch between a
   *fixed* baseline (``generation`` returns 0: a method call and nothing else),
   ``ProcessKeyState``, ``SharedKeyState`` (a counter file in the run's temporary
   directory) and ``RedisKeyState`` (when Redis answers at ``--redis-url``; else the
   row is left out and the reason printed). After each swap one untimed round trip fills
   the cache under the signal's generation. Reported: microseconds per round trip, the
   microseconds added per encrypt or decrypt against the baseline ((round trip -
   baseline's) / 2: two checks per round trip), and each ``generation()`` alone in
   nanoseconds per call (a loop of 10,000, loop included) and added against the
   baseline's. The issue's aim: under 2 us added per encrypt or decrypt, warm cache.
4. ``RedisKeyState`` propagation between two processes (``--changes`` each, default
   200): a spawned receiver pinned to CPU 1 with its own ``RedisKeyState`` watches a
   tenant's generation while this process (CPU 0) calls ``announce`` without acks;
   one way = from just before ``announce`` to the receiver seeing the generation move,
   both sides reading ``CLOCK_MONOTONIC`` (``perf_counter_ns``). Twice: the receiver
   *spinning* on ``generation()`` (a busy process: its listener thread must win the
   GIL, which the switch interval, 5 ms, bounds) and *polling* it every 50 us (a mostly
   idle one). Then ``announce`` with acks (``ack_timeout=1``), receiver idle: how long a
   change waits until both listeners (this process's and the receiver's) applied it.
   Medians, p99 and max. Skipped, with the reason, when Redis does not answer.
5. Versions: Python, cryptography, OpenSSL, SQLAlchemy.

Why: every encrypted column read and write goes through ``TenantKeys``. AES-GCM itself
runs at gigabytes per second, so for small values the cost is what surrounds it (Python
calls, the header and AAD, the cache); the issue's aim is that with a warm cache the
service keeps at least 0.8x of raw AES-GCM's throughput at 4 KiB. Unwrapping is a call
to the key provider (for a customer's KMS, a network round trip with a quota), so the
cache must turn a read-heavy workload into one unwrap per data key per TTL, not one per
read. Every use also asks the key-state signal for the tenant's generation, so that a
shred or rotation made by any process is seen on the next use: that lookup is on the
hot path, and the time a change takes to reach another host's process is the window
in which it could still use what it cached (unless the change waits for acks).

How: in-process on CPU 0, nothing else running. Every round trip is checked once before
timing. Each of the nine (size, variant) operations first runs one warm-up batch of
``--batch-seconds``, which also fixes its number of calls per batch; then ``--batches``
batches of all nine run interleaved (sizes and variants in turn), because this
machine's speed drifts by tens of percent between seconds: drift then hits a variant
and its baseline alike. Reported values are medians over batches; ratios and overheads
are medians of per-batch ratios and differences; section 3 runs the same way over its
signals, the order turning every batch. Section 4 alone uses a second process, on
CPU 1, and the Redis server wherever the kernel puts it. Uses ``bench/harness.py`` only
for pinning and the CPU numbers. A script, not a test: nothing asserts.

    .venv/bin/python bench/keys.py [--batches 21] [--batch-seconds 0.1]
        [--profile auto|on|off] [--redis-url redis://127.0.0.1:6379/0] [--changes 200]
        [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import multiprocessing
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import harness
import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, create_engine

from tenancy.clock import SYSTEM_CLOCK, Clock, FrozenClock
from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import ConfigurationError
from tenancy.events import MemorySink
from tenancy.keys import (
    Binding,
    DataKeyCache,
    KeyInfo,
    KeyProvider,
    KeyRef,
    LocalKeyProvider,
    PlatformKeyProvider,
    RootKey,
    TenantKeys,
)
from tenancy.keys.hazmat import HEADER_BYTES, NONCE_BYTES, DataKey, header_version, open_, seal
from tenancy.keys.redis_state import RedisKeyState
from tenancy.keys.service import COUNT_FLUSH_EVERY
from tenancy.keys.state import KeyStateSignal, ProcessKeyState, SharedKeyState

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
STATE_SIZE = 256
STATE_AIM_US = 2.0
GENERATION_CALLS = 10_000
POLL_S = 50e-6
REDIS_URL = os.environ.get("TENANCY_REDIS_URL", "redis://127.0.0.1:6379/0")


# -- the counting provider ------------------------------------------------------------


class CountingProvider:
    """Delegates every call to ``inner``; counts ``unwrap`` calls per data-key version."""

    def __init__(self, inner: PlatformKeyProvider) -> None:
        self._inner = inner
        self.name = inner.name
        self.unwraps: Counter[int] = Counter()
        self.wraps = 0

    def create_key(self, *, tenant_id: str) -> KeyRef:
        return self._inner.create_key(tenant_id=tenant_id)

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
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

    def destroy_version(self, key: KeyRef, version: str) -> None:
        self._inner.destroy_version(key, version)

    @property
    def total(self) -> int:
        return sum(self.unwraps.values())


def service(
    engine: Engine, provider: KeyProvider, *, ttl: float, clock: Clock = SYSTEM_CLOCK
) -> TenantKeys:
    return TenantKeys(
        engine, [provider], cache=DataKeyCache(ttl=ttl), clock=clock, events=MemorySink()
    )


def context(tenant_id: str) -> TenantContext:
    principal = Principal(
        issuer="bench",
        tenant_id=tenant_id,
        subject="alice",
        scopes=frozenset({"worklogs:read", "worklogs:write"}),
    )
    return TenantContext(tenant_id, "acme", "eu-central-1", principal, f"req-{uuid.uuid4().hex}")


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


def round_trips(keys: TenantKeys, tenant_id: str, size: int) -> dict[str, Callable[[], bytes]]:
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
        return keys.decrypt(
            keys.encrypt(plaintext, binding, purpose=PURPOSE), binding, purpose=PURPOSE
        )

    ops = {"raw": raw, "envelope": envelope, "TenantKeys": tenant_keys}
    for name, fn in ops.items():
        if fn() != plaintext:
            raise RuntimeError(f"{name} round trip of {size} B does not return the plaintext")
    return ops


def flush_cost(keys: TenantKeys, tenant_id: str, version: int, n: int = 30) -> float:
    """Median seconds of one message-count flush (a SQLite write transaction). Each adds
    one message, as a real flush adds its batch: adding 0 leaves the page unchanged, and
    SQLite then commits without writing (an order of magnitude cheaper than a flush)."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        with keys.store.transaction(tenant_id) as conn:
            keys.store.count_messages(conn, tenant_id, PURPOSE, version, 1)
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


def throughput(
    engine: Engine, local: PlatformKeyProvider, batches: int, batch_seconds: float, profile: str
) -> dict[str, Any]:
    counting = CountingProvider(local)
    keys = service(engine, counting, ttl=THROUGHPUT_TTL)
    tenant_id = str(uuid.uuid4())
    keys.provision(tenant_id)
    results: dict[str, Any] = {}
    with bind(context(tenant_id)):
        ops = {label: round_trips(keys, tenant_id, size) for size, label in SIZES}
        unwraps_at_start = counting.total
        counts = {
            label: {v: _calibrate(fn, batch_seconds) for v, fn in by_variant.items()}
            for label, by_variant in ops.items()
        }  # warm-up batch, not counted
        gc.collect()
        seconds: dict[str, dict[str, list[float]]] = {
            label: {v: [] for v in VARIANTS} for label in ops
        }
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
            row: dict[str, Any] = {
                "size": size,
                "label": label,
                "calls_per_batch": counts[label],
                "variants": {},
            }
            for v in VARIANTS:
                per_op = statistics.median(us[v])
                row["variants"][v] = {
                    "us_per_round_trip": per_op,
                    "ops_per_s": 1e6 / per_op,
                    "mb_per_s": size / per_op,
                }
            pairs = {
                "TenantKeys/raw": ("TenantKeys", "raw"),
                "envelope/raw": ("envelope", "raw"),
                "TenantKeys/envelope": ("TenantKeys", "envelope"),
            }
            row["ratios"] = {
                name: statistics.median(b / a for a, b in zip(us[x], us[y], strict=True))
                for name, (x, y) in pairs.items()
            }  # throughput ratio x/y
            row["overhead_us"] = {
                "format (envelope - raw)": statistics.median(
                    a - b for a, b in zip(us["envelope"], us["raw"], strict=True)
                ),
                "service (TenantKeys - envelope)": statistics.median(
                    a - b for a, b in zip(us["TenantKeys"], us["envelope"], strict=True)
                ),
            }
            rows.append(row)
        aim_row = next(r for r in rows if r["size"] == AIM_SIZE)
        aim_met = aim_row["ratios"]["TenantKeys/raw"] >= AIM_RATIO
        encrypts = sum(counts[label]["TenantKeys"] for label in counts) * (batches + 1)
        results = {
            "batches": batches,
            "batch_seconds": batch_seconds,
            "cache_ttl_s": THROUGHPUT_TTL,
            "purpose": PURPOSE,
            "aad_bytes": len(
                Binding(tenant_id, TABLE, COLUMN, f"wl-{uuid.uuid4()}").aad(bytes(HEADER_BYTES))
            ),
            "results": rows,
            "aim": {
                "size": AIM_SIZE,
                "ratio": AIM_RATIO,
                "measured": aim_row["ratios"]["TenantKeys/raw"],
                "met": aim_met,
            },
            "unwraps_during_run": unwraps_during,
            "tenantkeys_encrypts": encrypts,
            "count_flush": {
                "every_encrypts": COUNT_FLUSH_EVERY,
                "ms": flush_s * 1e3,
                "us_per_encrypt": flush_s * 1e6 / COUNT_FLUSH_EVERY,
            },
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


def unwrap_scenario(
    engine: Engine,
    local: PlatformKeyProvider,
    name: str,
    description: str,
    *,
    ttl: float,
    frozen: bool,
    rotate: bool,
) -> dict[str, Any]:
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
            rows.append((binding, plaintext, writer.encrypt(plaintext, binding, purpose=PURPOSE)))
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
        "scenario": name,
        "description": description,
        "ttl_s": ttl,
        "clock": "FrozenClock" if frozen else "system",
        "advance": (f"{ADVANCE_S:g} s every {ADVANCE_EVERY} reads" if frozen else None),
        "reads": READS,
        "rows_per_version": ROWS,
        "rotated_at_read": rotated_at,
        "span_s": reads[-1][0] - reads[0][0],
        "reads_per_version": {str(v): n for v, n in sorted(Counter(v for _, v in reads).items())},
        "unwraps": {str(v): got[v] for v in versions},
        "expected": {str(v): expected[v] for v in versions},
        "total": sum(got.values()),
        "expected_total": sum(expected.values()),
        "as_expected": all(got[v] == expected[v] for v in versions),
        "writer": {
            "encrypts": 2 * ROWS if rotate else ROWS,
            "wraps": writer_provider.wraps,
            "unwraps": writer_provider.total,
        },
    }


def unwrap_counts(engine: Engine, local: PlatformKeyProvider) -> list[dict[str, Any]]:
    return [
        unwrap_scenario(
            engine,
            local,
            "a",
            f"TTL {LONG_TTL:g} s > run, 1 data key",
            ttl=LONG_TTL,
            frozen=False,
            rotate=False,
        ),
        unwrap_scenario(
            engine,
            local,
            "b",
            f"TTL {SHORT_TTL:g} s, +{ADVANCE_S:g} s per {ADVANCE_EVERY} reads, 1 data key",
            ttl=SHORT_TTL,
            frozen=True,
            rotate=False,
        ),
        unwrap_scenario(
            engine,
            local,
            "c",
            f"as (b), rotate_data_key at read {READS // 2}",
            ttl=SHORT_TTL,
            frozen=True,
            rotate=True,
        ),
    ]


# -- the key-state check --------------------------------------------------------------


class FixedKeyState:
    """The baseline: a generation that never changes (a method returning a constant,
    the least any ``KeyStateSignal`` can cost); right for nothing but measuring."""

    def generation(self, tenant_id: str) -> int:
        return 0

    def changed(self, tenant_id: str) -> None:
        pass


def redis_state_or_reason(
    url: str, prefix: str, **options: Any
) -> tuple[RedisKeyState | None, str | None]:
    """A ``RedisKeyState``, or None and why not (no Redis: the section is skipped)."""
    try:
        return RedisKeyState(url, prefix=prefix, **options), None
    except ConfigurationError as exc:
        return None, str(exc)  # names host and port, never the URL's password


def generation_calls(state: KeyStateSignal, tenant_id: str) -> Callable[[], object]:
    """A batch of ``GENERATION_CALLS`` generation() calls, for the direct per-call cost."""
    generation = state.generation
    calls = range(GENERATION_CALLS)

    def run() -> object:
        for _ in calls:
            generation(tenant_id)
        return None

    return run


def state_check(
    engine: Engine,
    local: PlatformKeyProvider,
    tmp: Path,
    redis_url: str,
    batches: int,
    batch_seconds: float,
) -> dict[str, Any]:
    """Warm 256 B round trips through one TenantKeys whose ``state`` is each signal in
    turn, against the fixed-generation baseline; and each signal's generation() alone.

    One service, tenant and row for all, so that nothing but the signal differs: a swap
    changes the generation (a miss), so one untimed round trip after each swap fills
    the cache again under the signal's generation before the batch is timed.
    """
    prefix = f"tenancy-bench:{uuid.uuid4().hex[:12]}:keystate"
    redis_state, skipped = redis_state_or_reason(redis_url, prefix)
    shared = SharedKeyState(tmp / "keystate")
    states: dict[str, KeyStateSignal] = {
        "fixed": FixedKeyState(),
        "ProcessKeyState": ProcessKeyState(),
        "SharedKeyState": shared,
    }
    if redis_state is not None:
        states["RedisKeyState"] = redis_state
    plaintext = os.urandom(STATE_SIZE)
    keys = TenantKeys(engine, [local], cache=DataKeyCache(ttl=THROUGHPUT_TTL), events=MemorySink())
    tenant_id = str(uuid.uuid4())
    keys.provision(tenant_id)
    binding = Binding(tenant_id, TABLE, COLUMN, f"wl-{uuid.uuid4()}")

    def trip() -> bytes:
        return keys.decrypt(
            keys.encrypt(plaintext, binding, purpose=PURPOSE), binding, purpose=PURPOSE
        )

    direct = {name: generation_calls(state, tenant_id) for name, state in states.items()}
    trip_us: dict[str, list[float]] = {name: [] for name in states}
    call_ns: dict[str, list[float]] = {name: [] for name in states}
    counts: dict[str, int] = {}
    names = list(states)
    try:
        with bind(context(tenant_id)):
            for name, state in states.items():
                keys.state = state
                if trip() != plaintext:
                    raise RuntimeError(f"{name}: the round trip does not return the plaintext")
                counts[name] = _calibrate(trip, batch_seconds)  # the warm-up batch
            gc.collect()
            for batch in range(batches):
                # The order turns every batch, so that no signal always runs first.
                for name in names[batch % len(names) :] + names[: batch % len(names)]:
                    keys.state = states[name]
                    trip()  # refill under this signal's generation, untimed
                    trip_us[name].append(_timed(trip, counts[name]) / counts[name] * 1e6)
                    call_ns[name].append(_timed(direct[name], 1) / GENERATION_CALLS * 1e9)
    finally:
        if redis_state is not None:
            redis_state.close()
            forget_counter(redis_url, f"{prefix}:{tenant_id}")
        shared.close()
    rows = {}
    for name in states:
        rows[name] = {
            "us_per_round_trip": statistics.median(trip_us[name]),
            "ns_per_generation_call": statistics.median(call_ns[name]),
            # Two checks per round trip (one in encrypt, one in decrypt).
            "us_added_per_op": statistics.median(
                (a - b) / 2 for a, b in zip(trip_us[name], trip_us["fixed"], strict=True)
            ),
            "ns_added_per_call": statistics.median(
                a - b for a, b in zip(call_ns[name], call_ns["fixed"], strict=True)
            ),
            "calls_per_batch": counts[name],
        }
    return {
        "size": STATE_SIZE,
        "batches": batches,
        "batch_seconds": batch_seconds,
        "aim_us_per_op": STATE_AIM_US,
        "states": rows,
        "redis_skipped": skipped,
    }


# -- Redis propagation between two processes ------------------------------------------


def _receiver(conn: Connection, url: str, prefix: str, tenant_id: str) -> None:
    """The other process: its own RedisKeyState; watches ``tenant_id``'s generation.

    ``("spin", n)``: n times, report ready, then spin on generation() until it moves
    and send the time it saw it (a busy process: its listener thread waits for the GIL).
    ``("poll", n)``: the same, sleeping ``POLL_S`` between looks (a mostly idle process).
    ``("idle", 0)``: nothing; the parent times acknowledged announcements meanwhile.
    """
    if harness.LOAD_CPU in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {harness.LOAD_CPU})
    state = RedisKeyState(url, prefix=prefix, ack_timeout=None)
    conn.send("ready")
    while True:
        mode, n = conn.recv()
        if mode == "stop":
            break
        generation, clock, sleep = state.generation, time.perf_counter_ns, time.sleep
        for _ in range(n):
            before = generation(tenant_id)
            conn.send("watching")
            if mode == "spin":
                while generation(tenant_id) == before:
                    pass
            else:
                while generation(tenant_id) == before:
                    sleep(POLL_S)
            conn.send(clock())
        conn.send("done")
    state.close()


def _percentiles(ns: list[int]) -> dict[str, float]:
    ordered = sorted(ns)
    return {
        "median_ms": statistics.median(ordered) / 1e6,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6,
        "max_ms": ordered[-1] / 1e6,
    }


def propagation(url: str, changes: int) -> dict[str, Any]:
    """One-way time from announce() here to generation() moving in another process,
    and the time announce() takes when it waits for every listener's ack."""
    prefix = f"tenancy-bench:{uuid.uuid4().hex[:12]}:keystate"
    tenant_id = "bench-tenant"
    sender, skipped = redis_state_or_reason(url, prefix, ack_timeout=None)
    if sender is None:
        return {"skipped": skipped}
    acked: RedisKeyState | None = None
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    process = ctx.Process(target=_receiver, args=(child, url, prefix, tenant_id), daemon=True)
    results: dict[str, Any] = {"changes": changes, "poll_s": POLL_S}
    try:
        process.start()
        if conn.recv() != "ready":
            raise RuntimeError("the receiver did not start")
        for mode in ("spin", "poll"):
            conn.send((mode, changes))
            one_way, call = [], []
            for _ in range(changes):
                if conn.recv() != "watching":
                    raise RuntimeError("the receiver lost step")
                start = time.perf_counter_ns()
                reached = sender.announce(tenant_id)
                returned = time.perf_counter_ns()
                one_way.append(conn.recv() - start)
                call.append(returned - start)
            if conn.recv() != "done" or reached != 2:
                raise RuntimeError(f"expected 2 listeners reached, got {reached}")
            results[mode] = {"one_way": _percentiles(one_way), "announce": _percentiles(call)}
        conn.send(("idle", 0))
        conn.recv()
        # One RedisKeyState in this process at a time: its listener competes for the GIL.
        sender.close()
        acked, skipped = redis_state_or_reason(url, prefix, ack_timeout=1.0)
        if acked is None:
            raise RuntimeError(f"Redis went away: {skipped}")
        call = []
        for _ in range(changes):
            start = time.perf_counter_ns()
            if acked.announce(tenant_id) != 2:
                raise RuntimeError("expected 2 listeners reached")
            call.append(time.perf_counter_ns() - start)
        results["acked"] = {"announce": _percentiles(call)}
        conn.send(("stop", 0))
        process.join(10)
    finally:
        if process.is_alive():
            process.kill()
        sender.close()
        if acked is not None:
            acked.close()
        forget_counter(url, f"{prefix}:{tenant_id}")
    return results


def forget_counter(url: str, key: str) -> None:
    """Delete a key-state counter the run made in Redis."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(url)
        client.delete(key)
        client.close()


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
    print(
        f"Encrypt+decrypt round trips in-process on CPU 0: median of {t['batches']} "
        f"interleaved batches of ~{t['batch_seconds']:g} s per operation (after one "
        f"warm-up batch each; ratios = medians of per-batch ratios)"
    )
    print(
        f"raw = AESGCM encrypt+decrypt, os.urandom nonce, {t['aad_bytes']} B AAD; "
        f"seal/open_ = the envelope with a DataKey in hand; TenantKeys = encrypt+decrypt, "
        f"warm DataKeyCache(ttl={t['cache_ttl_s']:g}), tenant context bound, SQLite store"
    )
    print(f"{'size':7}{'variant':12}{'ops/s':>10}{'MB/s':>9}{'us/op':>10}{'vs raw':>8}")
    for r in t["results"]:
        for i, v in enumerate(VARIANTS):
            m = r["variants"][v]
            ratio = "" if v == "raw" else f"{r['ratios'][f'{v}/raw']:>7.2f}x"
            print(
                f"{r['label'] if i == 0 else '':7}{VARIANT_LABELS[v]:12}"
                f"{m['ops_per_s']:>10.0f}{m['mb_per_s']:>9.1f}{m['us_per_round_trip']:>10.2f}"
                f"{ratio:>8}"
            )
    print("MB/s = plaintext bytes per round trip x round trips/s")
    print(
        f"{'overhead per round trip, us':30}" + "".join(f"{r['label']:>10}" for r in t["results"])
    )
    for key in t["results"][0]["overhead_us"]:
        print(f"{key:30}" + "".join(f"{r['overhead_us'][key]:>10.2f}" for r in t["results"]))
    aim = t["aim"]
    print(
        f"aim TenantKeys/raw >= {aim['ratio']:.2f} at 4 KiB, warm cache: "
        f"{aim['measured']:.2f}x, {'met' if aim['met'] else 'NOT met'}"
    )
    f = t["count_flush"]
    print(
        f"message-count flush: {f['ms']:.2f} ms per SQLite transaction, every "
        f"{f['every_encrypts']} encrypts = {f['us_per_encrypt']:.2f} us per encrypt "
        f"(included in TenantKeys)"
    )
    print(
        f"unwrap calls during the throughput run: {t['unwraps_during_run']} "
        f"(~{t['tenantkeys_encrypts']} TenantKeys round trips, one data key)"
    )
    print()
    print(
        f"Unwrap calls per {READS:,} reads: a separate reader TenantKeys (cold cache) "
        f"decrypts {ROWS} rows per data key round-robin; expected = one unwrap per data "
        f"key per TTL window, from the reads' times"
    )
    print(f"{'':4}{'scenario':48}{'span s':>7}{'reads/DEK':>16}{'unwraps':>14}{'expected':>14}")
    for s in result["unwraps"]:

        def per_version(d: Mapping[str, int]) -> str:
            return " ".join(f"v{v}:{n}" for v, n in d.items())

        print(
            f"({s['scenario']}) {s['description']:48}{s['span_s']:>7.0f}"
            f"{per_version(s['reads_per_version']):>16}{per_version(s['unwraps']):>14}"
            f"{per_version(s['expected']):>14}  "
            f"{'as expected' if s['as_expected'] else 'NOT as expected'}"
        )
    writers = ", ".join(
        f"({s['scenario']}) {s['writer']['wraps']} wraps "
        f"{s['writer']['unwraps']} unwraps for {s['writer']['encrypts']} "
        f"encrypts"
        for s in result["unwraps"]
    )
    print(f"writer side (not counted above): {writers}")
    report_state(result["state_check"], result["propagation"])
    if t["profile"]:
        print()
        print("cProfile of 20,000 TenantKeys round trips of 4 KiB (sorted by own time):")
        print(t["profile"])


def report_state(check: dict[str, Any], prop: dict[str, Any]) -> None:
    print()
    print(
        f"Key-state check per use: warm {check['size']} B encrypt+decrypt through one "
        f"TenantKeys, its state swapped per batch, median of {check['batches']} "
        f"interleaved batches; "
        f"baseline = a fixed generation (a method returning 0); added = (round trip - "
        f"baseline's) / 2, medians of per-batch differences"
    )
    print(
        "generation() alone: ns per call in a loop of 10,000 calls (loop included), "
        "and added ns vs the baseline's call"
    )
    print(
        f"{'signal':18}{'us/round trip':>15}{'added us/op':>13}{'generation() ns':>17}"
        f"{'added ns':>10}"
    )
    for name, row in check["states"].items():
        fixed = name == "fixed"
        print(
            f"{name:18}{row['us_per_round_trip']:>15.2f}"
            f"{'baseline' if fixed else format(row['us_added_per_op'], '.3f'):>13}"
            f"{row['ns_per_generation_call']:>17.0f}"
            f"{'baseline' if fixed else format(row['ns_added_per_call'], '.0f'):>10}"
        )
    if check["redis_skipped"]:
        print(f"RedisKeyState skipped: {check['redis_skipped']}")
    aim = check["aim_us_per_op"]
    verdicts = ", ".join(
        f"{name} {'met' if row['us_added_per_op'] < aim else 'NOT met'}"
        for name, row in check["states"].items()
        if name != "fixed"
    )
    print(f"aim: under {aim:g} us added per encrypt or decrypt, warm cache: {verdicts}")
    print()
    if "skipped" in prop:
        print(f"Redis propagation skipped: {prop['skipped']}")
        return
    print(
        f"RedisKeyState propagation between two processes, {prop['changes']} changes each: "
        f"announce() here (CPU {harness.SERVER_CPU}) until generation() moves in a spawned "
        f"receiver (CPU {harness.LOAD_CPU}); both read CLOCK_MONOTONIC"
    )

    def line(label: str, p: Mapping[str, float]) -> str:
        return (
            f"{label:46}median {p['median_ms']:6.3f} ms  p99 {p['p99_ms']:6.3f} ms  "
            f"max {p['max_ms']:6.3f} ms"
        )

    print(line("receiver spinning on generation(), one way", prop["spin"]["one_way"]))
    print(
        line(
            f"receiver polling every {prop['poll_s'] * 1e6:g} us, one way", prop["poll"]["one_way"]
        )
    )
    print(line("announce() without acks, returns after", prop["spin"]["announce"]))
    print(line("announce() waiting for 2 acks (receiver idle)", prop["acked"]["announce"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batches", type=int, default=21, help="interleaved measured batches per operation"
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=0.1,
        help="approximate seconds per batch of one operation",
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "on", "off"),
        default="auto",
        help="cProfile the 4 KiB TenantKeys round trip (auto: when the 0.8x aim is missed)",
    )
    parser.add_argument(
        "--redis-url",
        default=REDIS_URL,
        help="Redis for the RedisKeyState rows and the propagation timing "
        "(default: $TENANCY_REDIS_URL or the local server)",
    )
    parser.add_argument(
        "--changes", type=int, default=200, help="key-state changes timed per propagation mode"
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.batches < 1 or args.batch_seconds <= 0 or args.changes < 1:
        parser.error("--batches and --changes must be at least 1, --batch-seconds positive")
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
            result["throughput"] = throughput(
                engine, local, args.batches, args.batch_seconds, args.profile
            )
            if not args.json:
                print("unwrap counts...", file=sys.stderr)
            result["unwraps"] = unwrap_counts(engine, local)
            if not args.json:
                print("key-state check...", file=sys.stderr)
            result["state_check"] = state_check(
                engine, local, Path(tmp), args.redis_url, args.batches, args.batch_seconds
            )
            if not args.json:
                print("redis propagation...", file=sys.stderr)
            result["propagation"] = propagation(args.redis_url, args.changes)
        engine.dispose()
    result["environment"] = environment()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
