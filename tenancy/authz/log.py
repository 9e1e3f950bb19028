"""The decision log: every decision, its input (secrets masked), result, revision, latency.

Sinks receive :class:`DecisionRecord` values on the request path, so they must be cheap:
:class:`JsonLinesDecisionLog` only appends to a queue, and a writer thread turns records
into JSON lines (building the input document there, not on the request path). ``close()``
drains the queue, so a shutdown loses nothing that was recorded.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from tenancy.authz.decision import Decision

_SECRET_KEY = re.compile(r"token|secret|password|authorization|cookie|credential|key$", re.I)
MASK = "***"


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
        return {
            "decision_id": uuid.uuid4().hex,
            "timestamp": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "service": self.service,
            "input": mask(self.input()),
            "result": {"allow": self.decision.allow, "reasons": list(self.decision.reasons)},
            "revision": self.decision.revision,
            "engine": self.decision.engine,
            "cached": self.cached,
            "latency_us": round(self.latency_us, 1),
        }


class DecisionLogSink(Protocol):
    """Receives every enforced decision; must not block or raise."""

    def record(self, record: DecisionRecord) -> None: ...


def mask(document: Any) -> Any:
    """``document`` with the values of secret-looking keys replaced by ``***``."""
    if isinstance(document, Mapping):
        return {k: MASK if isinstance(k, str) and _SECRET_KEY.search(k) else mask(v)
                for k, v in document.items()}
    if isinstance(document, list | tuple):
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
        self._thread = threading.Thread(target=self._write, name="tenancy-decision-log",
                                        daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records lost because the writer fell ``max_queue`` behind (never silently: this
        count is logged in the file when the writer catches up)."""
        return self._dropped

    def record(self, record: DecisionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write everything recorded so far, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout)

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
            handle.write(json.dumps({"dropped_records": self._dropped}) + "\n")
            self._dropped = 0
        handle.write(json.dumps(item.as_json(), separators=(",", ":")) + "\n")
