"""What every ``bench/peers/`` script shares: interleaved batches, medians, one table.

Each script measures, in one run, the *limit* (the least work that does the job: raw
AES-GCM, bare Starlette, one psycopg round trip), the *peers* a developer would pick
instead of tenancy for that job, and tenancy itself, on the same inputs. This machine's
speed drifts by tens of percent between seconds, so no variant is timed alone: every
round runs one batch of each variant, the order turning each round, and a variant's
figure is the median of its batches. Ratios are taken per round (drift hits a variant
and the limit alike) and reported as medians too.

Not a package: the scripts run as files (``.venv/bin/python bench/peers/keys.py``), so
``bench/peers/`` is first on ``sys.path`` and they ``import peerbench``.

    variants = {"raw AESGCM": raw, "Tink AEAD": tink_round_trip, "tenancy": ours}
    result = interleave(variants, rounds=args.rounds, seconds=args.seconds)
    report("4 KiB encrypt+decrypt", result, limit="raw AESGCM", ours="tenancy", unit="us")
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Operation = Callable[[], object]


@dataclass
class Result:
    """Per-variant seconds per operation, one entry per round (same order each)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def per_op(self, name: str) -> float:
        """The median seconds per operation of ``name``."""
        return statistics.median(self.seconds[name])

    def ratio(self, name: str, to: str) -> float:
        """Median over rounds of ``name``'s throughput over ``to``'s (1.0: as fast)."""
        return statistics.median(
            other / mine for mine, other in zip(self.seconds[name], self.seconds[to], strict=True)
        )


def calibrate(operation: Operation, seconds: float) -> int:
    """How many calls of ``operation`` take about ``seconds`` (at least one)."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            operation()
        took = time.perf_counter() - started
        if took >= seconds / 4 or calls >= 1 << 24:
            return max(1, int(calls * seconds / max(took, 1e-9)))
        calls *= 2


def interleave(
    variants: Mapping[str, Operation], *, rounds: int, seconds: float, warmup: float = 0.2
) -> Result:
    """Run ``rounds`` rounds of one batch (~``seconds``) per variant, order turning each
    round; each variant first warms up and fixes its batch size."""
    names = list(variants)
    for name in names:  # warm caches and the interpreter, then size each batch
        calibrate(variants[name], warmup)
    sizes = {name: calibrate(variants[name], seconds) for name in names}
    result = Result({name: [] for name in names})
    for round_ in range(rounds):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            operation, calls = variants[name], sizes[name]
            started = time.perf_counter()
            for _ in range(calls):
                operation()
            result.seconds[name].append((time.perf_counter() - started) / calls)
    return result


def report(
    title: str,
    result: Result,
    *,
    limit: str,
    ours: str | Sequence[str],
    unit: str = "us",
    rate: str | None = None,
    not_peers: Sequence[str] = (),
) -> dict[str, Any]:
    """Print a table: each variant's median time per operation (``unit``: ns, us, ms) or
    rate (``rate``: a label such as ``events/s``), its ratio to the limit, and each of
    ``ours`` against the best peer (the fastest variant that is neither the limit, nor
    ours, nor one of ``not_peers``: shown for scale, not doing the same job). Returns the
    same figures for ``--json``."""
    scale = {"ns": 1e9, "us": 1e6, "ms": 1e3}[unit]
    ours_names = [ours] if isinstance(ours, str) else list(ours)
    peers = [n for n in result.seconds if n != limit and n not in ours_names and n not in not_peers]
    best = min(peers, key=result.per_op) if peers else None
    print(f"\n{title}")
    column = rate or f"{unit}/op"
    print(f"  {'variant':34}{column:>14}{'vs limit':>10}")
    rows = {}
    for name in result.seconds:
        per_op = result.per_op(name)
        shown = f"{1 / per_op:,.0f}" if rate else f"{per_op * scale:,.2f}"
        to_limit = result.ratio(name, limit)
        mark = "  (limit)" if name == limit else ("  (best peer)" if name == best else "")
        print(f"  {name:34}{shown:>14}{to_limit:>9.2f}x{mark}")
        rows[name] = {"seconds_per_op": per_op, "vs_limit": to_limit}
    for name in ours_names:
        if best is not None:
            against = result.ratio(name, best)
            print(f"  {name} vs best peer ({best}): {against:.2f}x")
            rows[name]["vs_best_peer"] = against
    return {"title": title, "limit": limit, "best_peer": best, "variants": rows}


def arguments(
    description: str, *, rounds: int = 15, seconds: float = 0.2
) -> argparse.ArgumentParser:
    """The options every script takes: ``--rounds``, ``--seconds`` (per batch), ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds, help="batches per variant")
    parser.add_argument("--seconds", type=float, default=seconds, help="seconds per batch")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    return parser


def pin_to_one_cpu() -> None:
    """Run on one CPU (the first this process may use), so variants share one core."""
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[0]})


def environment() -> str:
    """One line naming what the numbers were measured on."""
    return (
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )


def write_json(path: str | None, sections: Sequence[Mapping[str, Any]]) -> None:
    """Write the sections' figures to ``path`` (``-``: stdout), if given."""
    if not path:
        return
    text = json.dumps({"environment": environment(), "sections": list(sections)}, indent=2)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(path, "w", encoding="utf-8") as file:
            file.write(text + "\n")
