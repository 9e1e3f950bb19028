"""A scripted stand-in for OPA's REST API, served over real HTTP/1.1 on loopback.

There is no OPA binary on our machines and no Docker engine, so the HTTP contract of
:class:`tenancy.authz.OPAServer` (which path it asks, what body it sends, what it makes of
each answer, whether it reuses its connection) is tested against this server instead. It
answers like OPA's Data API only as far as each test scripts it: it evaluates no Rego.

* ``POST /v1/data/<path>`` (a decision query): by default ``200 {}``, OPA's answer for an
  undefined decision; a test scripts another answer with :meth:`OPAStub.on`.
* ``PUT /v1/policies/<id>``: ``200 {}`` (policy stored in :attr:`OPAStub.policies`).
* ``PUT /v1/data/<key>``: ``204`` (document stored in :attr:`OPAStub.data`).
* anything else: ``404`` with an OPA-style error body.

Every request is recorded (method, raw request target, headers, body, the client's source
port and which TCP connection carried it), so tests can check paths, bodies and
connection reuse.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_NO_BODY = object()


@dataclass(frozen=True)
class Reply:
    """How the stub answers one request.

    ``json`` is serialised as the body; ``raw`` is sent as is (for non-JSON answers);
    ``delay`` holds the answer back (the wait ends early when the stub stops, so a slow
    answer never blocks teardown); ``close`` drops the connection without answering;
    ``hook`` runs first, with the recorded request, in the handler's thread; ``after``
    runs once the answer is stored (a PUT's document) and sent.
    """

    status: int = 200
    json: Any = _NO_BODY
    raw: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    close: bool = False
    hook: Callable[[Recorded], None] | None = None
    after: Callable[[Recorded], None] | None = None


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str  # the raw request target, query string included
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client_port: int
    connection: int  # 1 for the first TCP connection accepted, 2 for the next, ...

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Route:
    method: str
    prefix: str
    reply: Reply


@dataclass
class OPAStub:
    """Start with ``with OPAStub() as stub``; ``stub.url`` is OPA's base URL."""

    requests: list[Recorded] = field(default_factory=list)
    policies: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    connections: int = 0
    handler_errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._routes: list[_Route] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server = _Server(("127.0.0.1", 0), _handler_for(self), self)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="opa-stub",
            daemon=True,
        )

    # -- scripting -------------------------------------------------------------------

    def on(self, method: str, prefix: str, reply: Reply) -> None:
        """Answer ``method`` requests whose target starts with ``prefix`` with ``reply``
        (the latest matching script wins over earlier ones and over the defaults)."""
        with self._lock:
            self._routes.insert(0, _Route(method.upper(), prefix, reply))

    def decide_with(self, reply: Reply) -> None:
        """Script the answer to every decision query (``POST /v1/data/...``)."""
        self.on("POST", "/v1/data/", reply)

    def made(self, method: str, prefix: str = "/") -> list[Recorded]:
        """The recorded requests with that method whose target starts with ``prefix``."""
        with self._lock:
            return [r for r in self.requests if r.method == method and r.target.startswith(prefix)]

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> OPAStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        self._server.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # ends handlers idling on kept-alive connections
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- used by the handler ---------------------------------------------------------

    def _accepted(self, sock: socket.socket) -> int:
        with self._lock:
            self.connections += 1
            self._sockets.append(sock)
            return self.connections

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            if sock in self._sockets:
                self._sockets.remove(sock)

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _reply_for(self, method: str, target: str) -> Reply:
        with self._lock:
            for route in self._routes:
                if route.method == method and target.startswith(route.prefix):
                    return route.reply
        if method == "POST" and target.startswith("/v1/data/"):
            return Reply(200, {})  # undefined decision, as OPA answers it
        if method == "PUT" and target.startswith("/v1/policies/"):
            return Reply(200, {})
        if method == "PUT" and target.startswith("/v1/data/"):
            return Reply(204)
        return Reply(404, {"code": "resource_not_found", "message": f"{method} {target}"})

    def _apply(self, recorded: Recorded, reply: Reply) -> None:
        """Store what a successful PUT uploaded, as OPA would."""
        if recorded.method != "PUT" or reply.status >= 300:
            return
        with self._lock:
            if recorded.target.startswith("/v1/policies/"):
                self.policies[recorded.target.removeprefix("/v1/policies/")] = recorded.body.decode(
                    "utf-8"
                )
            elif recorded.target.startswith("/v1/data/"):
                self.data[recorded.target.removeprefix("/v1/data/")] = recorded.json()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never join handlers (a delayed or kept-alive one) on close

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], stub: OPAStub
    ) -> None:
        self.stub = stub
        super().__init__(address, handler)

    def shutdown_request(self, request: Any) -> None:
        self.stub._forget(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) leaves a broken pipe behind: expected, quiet.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.stub.handler_errors.append(exc)


def _handler_for(stub: OPAStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

        def setup(self) -> None:
            super().setup()
            self.connection_number = stub._accepted(self.request)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(
                method=self.command,
                target=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                client_port=self.client_address[1],
                connection=self.connection_number,
            )
            stub._record(recorded)
            reply = stub._reply_for(self.command, self.path)
            if reply.hook is not None:
                reply.hook(recorded)
            if reply.delay and stub._stopping.wait(reply.delay):
                self.close_connection = True
                return
            if reply.close:
                self.close_connection = True
                return
            stub._apply(recorded, reply)
            if reply.raw is not None:
                payload = reply.raw
            elif reply.json is not _NO_BODY:
                payload = json.dumps(reply.json).encode()
            else:
                payload = b""
            self.send_response(reply.status)
            if reply.status != 204:
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if reply.status != 204:
                self.wfile.write(payload)
            self.wfile.flush()
            if reply.after is not None:
                reply.after(recorded)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
