"""The decision log: every decision, its input (secrets masked), result, revision, latency.

Sinks receive :class:`DecisionRecord` values on the request path, so they must be cheap:
:class:`JsonLinesDecisionLog` only appends to a queue, and a writer thread turns records
into JSON lines (building the input document there, not on the request path).

An engine decision is logged in full, under a ``decision_id``. A decision served from
the cache is the same decision for the same input at a later ``now``, so its line names
the ``decision_id`` it repeats (``cached_from``) with its own time, instead of repeating
the input: that keeps a hot cache from turning the log into the bottleneck.

``close()`` drains the queue and runs at interpreter exit too, so a shutdown loses
nothing that was recorded.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import json
import os
import queue
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
        decision = self.decision
        record: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "service": self.service,
            "result": {"allow": decision.allow, "reasons": list(decision.reasons)},
            "revision": decision.revision,
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
    """Receives every enforced decision; must not block or raise."""

    def record(self, record: DecisionRecord) -> None: ...


@functools.lru_cache(maxsize=4096)
def _secret(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def mask(document: Any) -> Any:
    """``document`` with the values of secret-looking keys replaced by ``***``."""
    if type(document) is dict or isinstance(document, Mapping):
        return {k: MASK if isinstance(k, str) and _secret(k) else mask(v)
                for k, v in document.items()}
    if type(document) is list or isinstance(document, tuple):
        return [mask(v) for v in document]
    return document


class MemoryDecisionLog:
    """Keeps records in memory; for tests and tools."""

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def record(self, record: DecisionRecord) -> None:
        self.records.append(record)


class JsonLinesDecisionLog:
    """Writes one JSON object per decision to ``path`` (appending), from a writer thread."""

    def __init__(self, path: str | Path, *, max_queue: int = 100_000) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[DecisionRecord | None] = queue.Queue(max_queue)
        self._dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._write, name="tenancy-decision-log",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def dropped(self) -> int:
        """Records lost because the writer fell ``max_queue`` behind (never silently: the
        count is written to the log when the writer catches up)."""
        return self._dropped

    def record(self, record: DecisionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write everything recorded so far, then stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        atexit.unregister(self.close)

    def _write(self) -> None:
        with self._path.open("a", encoding="utf-8") as handle:
            while True:
                item = self._queue.get()
                if item is None:
                    handle.flush()
                    return
                self._write_one(handle, item)
                if self._queue.empty():
                    handle.flush()

    def _write_one(self, handle: TextIO, item: DecisionRecord) -> None:
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            handle.write(json.dumps({"dropped_records": dropped}) + "\n")
        handle.write(json.dumps(item.as_json(), separators=(",", ":")) + "\n")
