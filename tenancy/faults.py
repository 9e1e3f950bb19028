"""What a request meets when the database goes away, and when the app itself fails.

A connection that PostgreSQL terminated, that a restart dropped, or that cannot be made
at all is not a bug in the request: it is a fault of the moment. :class:`ServerFaults`
(which :class:`~tenancy.middleware.TenancyMiddleware` puts around the app, inside the
bound tenant context) answers it as such:

- an idempotent request (GET, HEAD, OPTIONS) whose response has not started is run once
  more, from the start: a new session, a new transaction, the tenant setting applied
  again on a fresh connection (the pool drops the dead ones when it sees a disconnect);
- any other request, or a second failure, is a 503 problem ``database-unavailable`` with
  ``Retry-After``: the client may try again; nothing was acknowledged that was not kept.
  (A fault while the middleware admits the request, before the app runs, is answered the
  same way: ``fault_of``.)

Any other exception the app lets escape (not a library error, which has its own answer)
is logged with its traceback and the request id, and answered as a 500 problem+json
carrying the request id: never a plain-text body, never the exception's text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenancy.context import current_or_none
from tenancy.errors import DatabaseUnavailable, InternalError, TenancyError
from tenancy.problems import problem_response

log = logging.getLogger("tenancy.faults")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# SQLSTATE classes and codes that mean "the connection, not the statement, failed".
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a lost or impossible database
    connection: a disconnect SQLAlchemy detected, an operational error without SQLSTATE
    (no connection was made), or a connection-class SQLSTATE (terminated, shut down)."""
    for cause in _chain(exc):
        if isinstance(cause, DatabaseUnavailable):
            return True
        if getattr(cause, "connection_invalidated", False):
            return True
        orig = getattr(cause, "orig", None)
        if orig is None or not _is_dbapi_error(cause):
            continue
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if state is not None and str(state).startswith(_CONNECTION_SQLSTATES):
            return True
        if state is None and type(orig).__name__ in {"OperationalError", "InterfaceError"}:
            return True
        if type(orig).__name__ in {"ConnectionDoesNotExistError", "InterfaceError"}:
            return True  # asyncpg: the connection closed under the query
    return False


def _is_dbapi_error(exc: BaseException) -> bool:
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover - sqlalchemy is a core dependency
        return False
    return isinstance(exc, DBAPIError)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class ServerFaults:
    """ASGI wrapper: database faults retried or answered 503, other escapes answered 500
    (see the module docs). ``request_id`` names the request in logs."""

    def __init__(self, app: ASGIApp, *, retries: int = 1) -> None:
        self.app = app
        self.retries = retries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        received: list[Message] = []

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received.append(message)
            return message

        attempts = 1 + (self.retries if scope.get("method") in IDEMPOTENT_METHODS else 0)
        for attempt in range(attempts):
            # A run again reads the request's body as the first run did (GET has none).
            this_receive = (
                _replaying(list(received), recording_receive) if attempt else recording_receive
            )
            try:
                await self.app(scope, this_receive, tracking_send)
                return
            except TenancyError:
                raise  # the library's own errors have their own answers
            except Exception as exc:
                if started:
                    raise  # too late to answer differently: the server closes the response
                if is_database_unavailable(exc) and attempt + 1 < attempts:
                    log.warning(
                        "request %s: database connection lost; %s %s runs again",
                        _request_id(),
                        scope.get("method"),
                        scope.get("path"),
                    )
                    continue
                await problem_response(fault_of(exc, scope), instance=scope.get("path"))(
                    scope, receive, send
                )
                return


def fault_of(exc: BaseException, scope: Scope, request_id: str | None = None) -> TenancyError:
    """The library error that answers ``exc``, logged with the request id: a warning and
    ``DatabaseUnavailable`` for a lost database, else the traceback and ``InternalError``."""
    where = (request_id or _request_id(), scope.get("method"), scope.get("path"))
    if is_database_unavailable(exc):
        log.warning("request %s: database unavailable for %s %s: %s", *where, exc)
        return DatabaseUnavailable("the database is not reachable now")
    log.error("request %s: unhandled error in %s %s", *where, exc_info=exc)
    return InternalError()


def _replaying(replay: list[Message], then: Receive) -> Receive:
    async def receive() -> Message:
        return replay.pop(0) if replay else await then()

    return receive


def _request_id() -> str:
    ctx = current_or_none()
    return ctx.request_id if ctx is not None else "-"
