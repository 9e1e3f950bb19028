"""Redis for tests: the local server, and key services in other processes that share it.

With ``CI=true`` an unreachable server is a failure, never a skip. Every test names its
own key prefix, so tests (and other users of the same server) never hear each other.

``KeysWorker`` is another process (``multiprocessing``, spawn: a fresh interpreter, as a
replica on another host would be) with its own ``TenantKeys`` over the same SQLite file
and key file as the test's, and its own ``RedisKeyState``. It runs one command at a time
from the test and answers with the result.

``Partition`` is a TCP proxy in front of the server that can stop passing bytes without
closing anything, as a network partition does: no reset reaches either side.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import socket
import threading
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import create_engine

from tenancy.events import MemorySink
from tenancy.keys import DataKeyCache, LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.redis_state import RedisKeyState
from tenancy.keys.state import KeyStateSignal
from tests.support.postgres import in_ci

REDIS_URL = os.environ.get("TENANCY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_SERVER = urlsplit(REDIS_URL)


def redis_client() -> redis.Redis:
    """A client of the local server; fails under CI=true when it does not answer, else
    skips."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        message = f"Redis is not reachable at {REDIS_URL}: {exc!r}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")
    return client


def unique_prefix() -> str:
    return f"tenancy-test:{uuid.uuid4().hex[:12]}:keystate"


def listener_ids(client: redis.Redis, prefix: str, pid: int | None = None) -> list[str]:
    """Redis client ids of the key-state listeners of ``prefix`` (of process ``pid``:
    their names end with it)."""
    return [
        c["id"]
        for c in client.client_list(_type="pubsub")
        if c.get("name", "").startswith(f"{prefix}:listener:")
        and (pid is None or c["name"].endswith(f":{pid}"))
    ]


class CountingProvider(LocalKeyProvider):
    """The local provider, counting unwraps: each one is a data-key cache miss."""

    unwraps = 0

    def unwrap(self, *args: Any, **kwargs: Any) -> bytes:
        self.unwraps += 1
        return super().unwrap(*args, **kwargs)


def build_keys(directory: Path, state: KeyStateSignal) -> tuple[TenantKeys, CountingProvider]:
    """A key service over ``directory``'s SQLite file and key file (warm cache for an
    hour: only a key-state change can make an entry miss during a test)."""
    provider = CountingProvider(
        directory / "keks.json", root=RootKey.load_or_create(directory / "root.key")
    )
    engine = create_engine(f"sqlite:///{directory / 'keys.db'}")
    keys = TenantKeys(
        engine, [provider], cache=DataKeyCache(ttl=3600), state=state, events=MemorySink()
    )
    keys.create_schema()
    return keys, provider


def _serve(conn: Connection, directory: str, prefix: str, ack_timeout: float | None) -> None:
    """The worker's body: ``(command, tenant)`` in, ``(result, seconds)`` out."""
    state = RedisKeyState(REDIS_URL, prefix=prefix, ack_timeout=ack_timeout)
    keys, _ = build_keys(Path(directory), state)
    conn.send(("ready", 0.0))
    while True:
        command, tenant_id = conn.recv()
        if command == "stop":
            break
        start = time.perf_counter()
        try:
            result: object = (
                getattr(keys, command)(tenant_id)
                if command != "announce"
                else state.announce(tenant_id)
            )
        except Exception as exc:  # sent back to the test, which fails with it
            result = exc
        conn.send((result, time.perf_counter() - start))
    state.close()
    conn.close()


class KeysWorker:
    """Another process with its own ``TenantKeys`` and ``RedisKeyState``."""

    def __init__(self, directory: Path, prefix: str, *, ack_timeout: float | None = 1.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(directory), prefix, ack_timeout), daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(60):
            self.close()
            raise TimeoutError("the keys worker did not start")
        self._conn.recv()

    def run(self, command: str, tenant_id: str) -> tuple[Any, float]:
        """Run ``TenantKeys.<command>(tenant_id)`` (or ``announce``: the state's) there;
        returns its result and how long it took there."""
        self._conn.send((command, tenant_id))
        result, seconds = self._conn.recv()
        if isinstance(result, Exception):
            raise result
        return result, seconds

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", ""))
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> KeysWorker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Partition:
    """A TCP proxy to the test server; ``cut()`` silently stops every byte (the URL's
    database number and password, if any, are not carried over)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/0"
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            upstream = socket.create_connection(
                (_SERVER.hostname or "127.0.0.1", _SERVER.port or 6379)
            )
            self._sockets += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                if self._cut.is_set():  # bytes stay in the kernel's buffers, unread
                    time.sleep(0.01)
                    continue
                if select.select([source], [], [], 0.05)[0]:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for sock in self._sockets:
            sock.close()
