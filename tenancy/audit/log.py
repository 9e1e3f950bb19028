"""``AuditLog``: the ``EventSink`` that appends every security event to its tenant's
hash chain in the database, off the request path.

Durability, precisely:

- ``emit(event)`` *accepts* an event: it is queued in memory (one uncontended lock and
  a queue put; no I/O, no hashing) and written by the writer thread within
  ``flush_interval`` seconds, in batches of at most ``batch_max`` per transaction. An
  accepted event survives a normal shutdown (``close()``, which the ``atexit`` hook
  also runs) and database outages (the writer retries), but not the process being
  killed before its batch commits.
- An event is *committed* once its batch's transaction has committed: when
  ``emit_durable(event)`` returns (it returns the stored record) or when a ``flush()``
  called after ``emit`` returns. A committed event is never lost, whatever happens to
  the process afterwards (``kill -9`` included): its row and the signed head that
  covers it are in the same transaction. Use ``emit_durable`` for privileged actions
  (support grants, purges, exports, key destruction) that must not happen unrecorded.

Events keep their emission order within a tenant. Several ``AuditLog`` instances, in
one process or many, may write to the same database: each batch locks the tenant's head
row first, so sequence numbers never collide and the chain stays linear.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from tenancy.audit.keyfile import load_audit_key
from tenancy.audit.record import (
    GENESIS_HASH,
    PLATFORM_CHAIN,
    AuditRecord,
    canonical_json,
    chain,
    head_mac,
    head_mac_ok,
)
from tenancy.audit.store import (
    Head,
    insert_records,
    lock_head,
    metadata,
    put_head,
    read_head,
    read_records,
)
from tenancy.audit.verify import VerifyResult, verify_chain
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import AuditWriteError, ConfigurationError
from tenancy.events import SecurityEvent
from tenancy.retrying import retrying
from tenancy.scoping.rls import set_tenant

logger = logging.getLogger("tenancy.audit")

_CONFLICT_RETRIES = 20


class _Waiter:
    __slots__ = ("done", "error", "records")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.records: list[AuditRecord] = []
        self.error: BaseException | None = None


@dataclass(slots=True)
class _Item:
    event: SecurityEvent | None  # None: a flush marker
    waiter: _Waiter | None = None
    stop: bool = False
    record: AuditRecord | None = field(default=None)


def chain_of(event: SecurityEvent) -> str:
    """The chain an event belongs to: its tenant's, or the platform chain."""
    return event.tenant_id or PLATFORM_CHAIN


class AuditLog:
    """Append-only, per-tenant, hash-chained audit log (an ``EventSink``).

    ``key``: the head HMAC key, as bytes, a path to a 0600 hex file, or ``None`` for
    ``$TENANCY_AUDIT_KEY``. It never goes to the database.
    """

    def __init__(
        self,
        engine: Engine,
        key: bytes | str | os.PathLike[str] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        batch_max: int = 500,
        flush_interval: float = 0.05,
        retry_interval: float = 0.5,
        durable_timeout: float = 10.0,
    ) -> None:
        if batch_max < 1 or flush_interval < 0:
            raise ConfigurationError("batch_max must be >= 1 and flush_interval >= 0")
        self._engine = engine
        self._key = load_audit_key(key)
        self._clock = clock
        self._batch_max = batch_max
        self._flush_interval = flush_interval
        self._retry_interval = retry_interval
        self._durable_timeout = durable_timeout
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._state = threading.Lock()
        self._closed = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tenancy-audit-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- schema and reading -----------------------------------------------------------

    def create_schema(self) -> None:
        """Create the audit tables where missing, without RLS policies: on PostgreSQL those
        come from a migration (``tenancy.scoping.rls.migration_statements``)."""
        metadata.create_all(self._engine)

    def events(self, tenant_id: str) -> list[AuditRecord]:
        """``tenant_id``'s chain in order (under RLS on PostgreSQL)."""
        with self._reading(tenant_id) as conn:
            return read_records(conn, tenant_id)

    def verify(self, tenant_id: str) -> VerifyResult:
        """Recompute ``tenant_id``'s chain from seq 1 and check its signed head."""
        with self._reading(tenant_id) as conn:
            head = read_head(conn, tenant_id)
            records = read_records(conn, tenant_id)
        return verify_chain(self._key, tenant_id, records, head)

    def export_jsonl(self, tenant_id: str, out: IO[str]) -> int:
        """Write ``tenant_id``'s chain as JSON lines (canonical, with ``hash``); the count."""
        records = self.events(tenant_id)
        for record in records:
            out.write(canonical_json(record.as_json()) + "\n")
        return len(records)

    @contextmanager
    def _reading(self, tenant_id: str) -> Iterator[Connection]:
        # One snapshot for head and records: writers commit both together.
        engine = self._engine
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                set_tenant(conn, tenant_id)
            yield conn

    # -- EventSink ----------------------------------------------------------------------

    def emit(self, event: SecurityEvent) -> None:
        """Accept ``event`` (see the module docstring); never raises."""
        with self._state:
            if not self._closed:
                self._queue.put(_Item(event))
                return
        try:  # after close(): write it at once rather than drop it
            self._write([event])
        except Exception:
            logger.exception("audit event lost after close: %s", _describe(event))

    def emit_durable(self, event: SecurityEvent, *, timeout: float | None = None) -> AuditRecord:
        """Commit ``event`` (and every event accepted before it); return its record.

        Raises :class:`AuditWriteError` if it is not committed within ``timeout``
        (default ``durable_timeout``); the event then stays queued.
        """
        with self._state:
            if self._closed:
                return self._write([event])[0]
            waiter = _Waiter()
            self._queue.put(_Item(event, waiter))
        self._wait(waiter, timeout)
        return waiter.records[0]

    def flush(self, timeout: float | None = None) -> None:
        """Return once every event accepted before the call is committed."""
        with self._state:
            if self._closed:
                return
            waiter = _Waiter()
            self._queue.put(_Item(None, waiter))
        self._wait(waiter, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything accepted, stop the writer. Later events are written inline."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._stopping = True  # a writer retrying an outage gives up after a few tries
            self._queue.put(_Item(None, stop=True))
        self._thread.join(timeout)
        atexit.unregister(self.close)
        leftover = self._drain_nowait()  # anything that raced the stop marker
        if leftover:
            self._commit(leftover)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, waiter: _Waiter, timeout: float | None) -> None:
        if not waiter.done.wait(self._durable_timeout if timeout is None else timeout):
            raise AuditWriteError("audit event not committed in time")
        if waiter.error is not None:
            raise AuditWriteError(f"audit write failed: {waiter.error}") from waiter.error

    # -- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            urgent = batch[0].waiter is not None or batch[0].stop
            deadline = time.monotonic() + self._flush_interval
            while len(batch) < self._batch_max:
                try:
                    if urgent:
                        item = self._queue.get_nowait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                batch.append(item)
                urgent = urgent or item.waiter is not None or item.stop
            stop = any(item.stop for item in batch)
            if stop:
                self._stopping = True
                batch += self._drain_nowait()
            self._commit(batch)

    def _drain_nowait(self) -> list[_Item]:
        items: list[_Item] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _commit(self, batch: list[_Item]) -> None:
        """Write the batch's events, retrying while the database fails; wake waiters."""
        attempt = 0
        while True:
            try:
                self._write_items([i for i in batch if i.event is not None])
                break
            except Exception as exc:
                attempt += 1
                if self._stopping and attempt >= 5:
                    self._give_up(batch, exc)
                    return
                logger.warning("audit write failed (attempt %d), retrying: %s", attempt, exc)
                time.sleep(min(self._retry_interval * attempt, 5.0))
        for item in batch:
            if item.waiter is not None:
                if item.record is not None:
                    item.waiter.records.append(item.record)
                item.waiter.done.set()

    def _give_up(self, batch: Sequence[_Item], exc: BaseException) -> None:
        lost = [i.event for i in batch if i.event is not None and i.record is None]
        for event in lost:
            logger.error("audit event NOT written at shutdown: %s", _describe(event))
        for item in batch:
            if item.waiter is not None:
                item.waiter.error = exc
                item.waiter.done.set()

    def _write(self, events: Iterable[SecurityEvent]) -> list[AuditRecord]:
        """Chain and insert ``events`` now, on the calling thread; records in order."""
        items = [_Item(event) for event in events]
        self._write_items(items)
        return [item.record for item in items if item.record is not None]

    def _write_items(self, items: Sequence[_Item]) -> None:
        """Write the items not yet written: one transaction per tenant and chunk; each
        item gets its record as soon as its transaction commits (so a retry after a
        partial failure never writes an event twice)."""
        groups: dict[str, list[_Item]] = {}
        for item in items:
            if item.record is None and item.event is not None:
                groups.setdefault(chain_of(item.event), []).append(item)
        for tenant_id, group in groups.items():
            for start in range(0, len(group), self._batch_max):
                chunk = group[start : start + self._batch_max]
                records = self._append(tenant_id, [i.event for i in chunk if i.event])
                for item, record in zip(chunk, records, strict=True):
                    item.record = record

    def _append(self, tenant_id: str, events: Sequence[SecurityEvent]) -> list[AuditRecord]:
        # Another writer created the head or held the lock: take it again.
        for attempt in retrying(on=_conflict, attempts=_CONFLICT_RETRIES, backoff=0.01):
            with attempt:
                return self._append_once(tenant_id, events)
        raise AuditWriteError("the audit chain could not be appended to")  # no attempt ran

    def _append_once(self, tenant_id: str, events: Sequence[SecurityEvent]) -> list[AuditRecord]:
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                set_tenant(conn, tenant_id)
            head = lock_head(conn, tenant_id)
            seq, prev, authentic = 0, GENESIS_HASH, True
            if head is not None:
                seq, prev = head.seq, head.hash
                authentic = head_mac_ok(self._key, tenant_id, head.seq, head.hash, head.mac)
                if not authentic:
                    # Never re-sign a head we did not sign: that would launder a forgery.
                    logger.critical(
                        "audit chain head of %s does not verify; appending without re-signing it",
                        tenant_id,
                    )
            records: list[AuditRecord] = []
            for event in events:
                seq += 1
                record = chain(tenant_id, seq, prev, event)
                prev = record.hash
                records.append(record)
            insert_records(conn, records)
            mac = (
                head_mac(self._key, tenant_id, seq, prev)
                if authentic
                else (head.mac if head is not None else "")
            )
            put_head(
                conn, Head(tenant_id, seq, prev, mac), self._clock.now(), exists=head is not None
            )
        return records


def _conflict(exc: BaseException) -> bool:
    """A race with another writer (worth an immediate retry), not an outage."""
    if isinstance(exc, IntegrityError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40001", "40P01") or "locked" in str(exc.orig).lower()


def _describe(event: SecurityEvent) -> str:
    return json.dumps(
        {
            "action": event.action,
            "tenant_id": event.tenant_id,
            "at": event.at.isoformat(),
            "actor": event.actor,
            "reason": event.reason,
            "request_id": event.request_id,
            "details": dict(event.details),
        },
        sort_keys=True,
    )
