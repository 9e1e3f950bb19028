"""The decision log: every decision, its input (secrets masked), result, revision, latency.

Sinks receive :class:`DecisionRecord` values on the request path, so they must be cheap:
:class:`JsonLinesDecisionLog` only appends to a queue, and a writer thread turns records
into JSON lines (building the input document there, not on the request path).

An engine decision is logged in full, under a ``decision_id``. A decision served from
the cache is the same decision for the same input at a later ``now``, so the JSON-lines
sink writes, per write cycle (``interval``, 50 ms), one line per repeated decision:
``cached_from`` (the ``decision_id`` it repeats), ``count``, and the first and last
time. That keeps a hot cache from turning the log into the bottleneck; a sink that
needs one line per request receives every record and can write them all.

``close()`` drains the queue and runs at interpreter exit too, so a shutdown loses
nothing that was recorded.
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from tenancy.authz.decision import Decision

_SECRET_KEY = re.compile(r"token|secret|password|authorization|cookie|credential|key$", re.I)
MASK = "***"
_PROCESS = os.urandom(4).hex()
_ids = itertools.count(1)


def new_decision_id() -> str:
    """Unique per process run and ordered; cheaper than a uuid4 on every decision."""
    return f"{_PROCESS}-{next(_ids)}"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One enforced decision. ``input`` builds the policy input on demand."""

    at: float
    service: str
    decision: Decision
    cached: bool
    latency_us: float
    input: Callable[[], Mapping[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """The record as one JSON-ready log entry: time, service, result, revision (local
        data changes), bundle (the policy bundle's revision), engine, latency. An engine
        decision adds its ``decision_id`` and the input, with the values of secret-looking
        keys masked; a cached repeat adds ``cached_from`` instead (its input was logged
        with the original)."""
        decision = self.decision
        record: dict[str, Any] = {
            "timestamp": _iso(self.at),
            "service": self.service,
            "result": {"allow": decision.allow, "reasons": list(decision.reasons)},
            "revision": decision.revision,
            "bundle": decision.bundle,
            "engine": decision.engine,
            "cached": self.cached,
            "latency_us": round(self.latency_us, 1),
        }
        if self.cached and decision.decision_id is not None:
            record["cached_from"] = decision.decision_id
        else:
            record["decision_id"] = decision.decision_id
            record["input"] = mask(self.input())
        return record


class DecisionLogSink(Protocol):
    """Receives every enforced decision; must not block or raise.

    A sink may also define ``repeat(decision, at)``: the authorizer then reports cache
    hits through it instead of building a record per request.
    """

    def record(self, record: DecisionRecord) -> None:
        """Take one decision record; called on the request path, so it must return at
        once and never raise."""


@functools.lru_cache(maxsize=4096)
def _secret(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def mask(document: Any) -> Any:
    """``document`` with the values of secret-looking keys replaced by ``***``."""
    if type(document) is dict or isinstance(document, Mapping):
        return {
            k: MASK if isinstance(k, str) and _secret(k) else mask(v) for k, v in document.items()
        }
    if type(document) is list or isinstance(document, tuple):
        return [mask(v) for v in document]
    return document


class MemoryDecisionLog:
    """Keeps records in memory; for tests and tools."""

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def record(self, record: DecisionRecord) -> None:
        """Append the record to ``records``."""
        self.records.append(record)


class JsonLinesDecisionLog:
    """Writes decisions as JSON lines to ``path`` (appending), from a writer thread.

    The request path only appends to a deque; the writer wakes every ``interval``
    seconds. At most ``max_pending`` records wait; beyond that they are counted as
    dropped, and the count is written to the log.
    """

    def __init__(
        self, path: str | Path, *, max_pending: int = 100_000, interval: float = 0.05
    ) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: collections.deque[DecisionRecord] = collections.deque()
        self._repeats: collections.deque[tuple[Decision, float, str]] = collections.deque()
        self._max = max_pending
        self._interval = interval
        self._dropped = 0
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(
            target=self._write, name="tenancy-decision-log", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    @property
    def dropped(self) -> int:
        """How many records and repeats were dropped because the queue was full and are not
        yet reported in the log: the writer resets it to 0 when it writes the count. Updated
        without a lock, so under contention it can undercount."""
        return self._dropped

    def record(self, record: DecisionRecord) -> None:
        """Queue the record for the writer thread (never blocks, never raises). With
        ``max_pending`` records already waiting, it is counted as dropped instead. A record
        queued after ``close`` is never written."""
        if len(self._pending) >= self._max:
            self._dropped += 1
            return
        self._pending.append(record)  # atomic; no lock on the request path

    def repeat(self, decision: Decision, at: float, service: str) -> None:
        """A cache hit of ``decision`` at ``at``: counted, written once per cycle."""
        if len(self._repeats) >= self._max:
            self._dropped += 1
            return
        self._repeats.append((decision, at, service))

    def close(self, timeout: float = 10.0) -> None:
        """Write everything recorded so far, then stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        atexit.unregister(self.close)

    def _write(self) -> None:
        with self._path.open("a", encoding="utf-8") as handle:
            while not self._stop.wait(self._interval):
                self._drain(handle)
            self._drain(handle)

    def _drain(self, handle: TextIO) -> None:
        pending, hits = self._pending, self._repeats
        repeats: dict[tuple[str | None, bool], dict[str, Any]] = {}
        lines: list[str] = []
        while pending:
            item = pending.popleft()
            if item.cached and item.decision.decision_id is not None:
                hits.append((item.decision, item.at, item.service))
            else:
                lines.append(json.dumps(item.as_json(), separators=(",", ":")))
        while hits:
            decision, at, service = hits.popleft()
            key = (decision.decision_id, decision.allow)
            repeat = repeats.get(key)
            if repeat is None:
                repeats[key] = repeat = {
                    "cached_from": decision.decision_id,
                    "service": service,
                    "allow": decision.allow,
                    "count": 0,
                    "first": at,
                    "last": at,
                }
            repeat["count"] += 1
            repeat["last"] = at
        for repeat in repeats.values():
            repeat["first"] = _iso(repeat["first"])
            repeat["last"] = _iso(repeat["last"])
            lines.append(json.dumps(repeat, separators=(",", ":")))
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            lines.append(json.dumps({"dropped_records": dropped}))
        if lines:
            handle.write("\n".join(lines) + "\n")
            handle.flush()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()
