"""The sync session tests, run again on :class:`AsyncTenantSession` over async drivers.

As SQLAlchemy runs its own suite on asyncio drivers: the same test body runs inside
SQLAlchemy's greenlet on an event loop (``greenlet_spawn``), and its sessions are the
sync face of an ``AsyncTenantSession`` on a ``create_async_engine`` engine, so every
statement goes through the async driver and every hook runs where it runs for async
code. A fixture that wants this sets ``request.node.async_runner``; the root conftest's
``pytest_pyfunc_call`` then runs the test through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn

from tenancy.scoping import AsyncTenantSession, TenantSession

#: flavour -> the async driver of the same database
ASYNC_DRIVERS = {
    "sqlite-aiosqlite": "sqlite+aiosqlite",
    "postgres-psycopg-async": "postgresql+psycopg",
    "postgres-asyncpg": "postgresql+asyncpg",
}


class AsyncRunner:
    """One event loop per test: the test, its async engines and their disposal run on it
    (a pooled async connection belongs to the loop that opened it)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._engines: list[AsyncEngine] = []

    def engine(self, like: Engine | str, driver: str, **kwargs: Any) -> AsyncEngine:
        """An async engine on the database ``like`` names (same user), through ``driver``."""
        url = like.url if isinstance(like, Engine) else make_url(like)
        engine = create_async_engine(url.set(drivername=driver), **kwargs)
        self._engines.append(engine)
        return engine

    def sessions(self, engine: AsyncEngine, **kwargs: Any) -> Callable[[], TenantSession]:
        """A factory of the sync faces of new ``AsyncTenantSession`` objects."""
        maker = async_sessionmaker(engine, class_=AsyncTenantSession, **kwargs)

        def make() -> TenantSession:
            session = maker().sync_session
            assert isinstance(session, TenantSession)
            return session

        return make

    def run(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """``fn(**kwargs)`` inside SQLAlchemy's greenlet, on this runner's loop."""
        return self.loop.run_until_complete(greenlet_spawn(fn, **kwargs))

    def wait(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on this runner's loop."""
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        """Dispose of every engine on the loop, then close it."""
        for engine in self._engines:
            self.loop.run_until_complete(engine.dispose())
        self.loop.close()
