"""Key work that may block, kept off the event loop.

An :class:`~tenancy.scoping.AsyncTenantSession` seals and opens encrypted columns inside
SQLAlchemy's greenlet, on the event loop's thread. A warm key costs microseconds there,
but a cold one means a key-store query and an unwrap at a KMS or HSM (tens or hundreds of
milliseconds): run on the loop, that would stall every other request of the process.

So key operations called from such a greenlet first run with blocking forbidden: the key
service raises :class:`WouldBlock` at the first step that would wait (before it changes
any state), and the whole operation runs again in a worker thread, awaited through the
greenlet. Called from anywhere else (a thread, a sync session), they just run.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

_forbidden: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tenancy_keys_blocking_forbidden", default=False
)


class WouldBlock(Exception):
    """The operation needs I/O and blocking is forbidden here: run it off the loop. A
    signal between :func:`may_block` and :func:`call`, never surfaced to callers."""


def may_block() -> None:
    """Call before a step that waits on I/O (a key-store query, an unwrap).

    Raises:
        WouldBlock: this operation was started on the event loop; nothing changed yet.
    """
    if _forbidden.get():
        raise WouldBlock


def call(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``fn(*args, **kwargs)``, without blocking the event loop when called from an
    async session's greenlet: first with blocking forbidden (a warm key answers there),
    then, if it would block, in a worker thread (with this context: the bound tenant)."""
    from sqlalchemy.util.concurrency import in_greenlet

    if not in_greenlet():
        return fn(*args, **kwargs)
    token = _forbidden.set(True)
    try:
        return fn(*args, **kwargs)
    except WouldBlock:
        pass
    finally:
        _forbidden.reset(token)
    return _off_the_loop(functools.partial(fn, *args, **kwargs))


def _off_the_loop(work: Callable[[], _T]) -> _T:
    import anyio.to_thread
    from sqlalchemy.util.concurrency import await_only

    # The thread runs in a copy of this context (anyio copies it): the bound tenant and
    # any system scope come along; blocking is allowed there (reset above).
    context = contextvars.copy_context()
    return await_only(anyio.to_thread.run_sync(context.run, work))
