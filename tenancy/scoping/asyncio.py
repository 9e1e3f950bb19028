"""Async scoping: :class:`AsyncTenantSession`, for ``async_sessionmaker``.

SQLAlchemy's asyncio extension runs an ordinary ``Session`` inside a greenlet and awaits
the driver from there; every ORM event runs in that greenlet, in the calling task's
context. So the async session is the sync one under the same hooks: its sync session is a
:class:`~tenancy.scoping.TenantSession`, and every guarantee of that class holds here as
written (criteria on every statement, stamping and ``CrossTenantWrite``, nothing with no
tenant bound outside :func:`~tenancy.scoping.system_scope`, one tenant per session, the
PostgreSQL setting set local to each transaction, the pool resetting it on checkin).

What differs is only what asyncio changes:

- the tenant is read from the task's context when a statement runs: a task copies its
  creator's context when it is created (``asyncio.create_task``, ``gather``), so work
  spawned under tenant A stays A's even if it is awaited under B;
- lazy loads are refused as SQLAlchemy's asyncio extension refuses them
  (``MissingGreenlet``): load eagerly (``selectinload``) or ``await obj.awaitable_attrs.x``;
- encrypted columns open and seal in the greenlet, on the loop's thread; a key operation
  that would wait (a key-store query, an unwrap at a KMS or HSM) is run in a worker
  thread instead (``tenancy.keys.blocking``);
- a session (like an ``AsyncSession``) belongs to one task at a time: one per request.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tenancy.scoping.orm import TenantSession


class AsyncTenantSession(AsyncSession):
    """An ``AsyncSession`` whose statements are scoped to the bound tenant exactly as a
    :class:`~tenancy.scoping.TenantSession`'s are (it is one, inside)::

        Session = async_sessionmaker(engine, class_=AsyncTenantSession,
                                     info={"tenancy_keys": keys})
        async with Session() as session:
            rows = (await session.scalars(select(Worklog))).all()  # this tenant's only
    """

    sync_session_class = TenantSession
