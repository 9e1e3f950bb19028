"""Running the matrix: every cell in its own savepoint of a transaction rolled back.

What stays here is the run itself (checking the connection can hold a transaction,
choosing the tenants, calling the auditor, one :class:`.table.TableProbe` per scoped
table); the cells' SQL, their transactions and their judgement have their own modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import Connection, create_engine, func, make_url, select, text
from sqlalchemy.exc import DBAPIError

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import MatrixError
from tenancy.scoping.audit import audit, scoped_tables
from tenancy.tenants.registry import tenants_table
from tenancy.testing.dbmatrix.model import (
    LOCK_TIMEOUT,
    NONE,
    OWN,
    UNSET,
    DatabaseMatrix,
)
from tenancy.testing.dbmatrix.sessions import new_session, rolled_back
from tenancy.testing.dbmatrix.table import TableProbe
from tenancy.testing.dbmatrix.verdict import failure_of


def access_matrix(
    connection: Connection,
    *,
    tenants: Sequence[str] | None = None,
    app_role: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DatabaseMatrix:
    """Build the matrix on ``connection`` (connect as the application role: the matrix
    proves what *that* role can do). ``tenants`` defaults to the registry's ids.

    Nothing is changed: the work runs in a transaction (a savepoint if one is open) that
    is always rolled back. Raises MatrixError when there are no tenants to test, the
    database is not PostgreSQL, or the connection cannot hold a transaction.
    """
    if connection.dialect.name != "postgresql":
        raise MatrixError("the access matrix needs PostgreSQL (row-level security)")
    outer = connection.begin_nested() if connection.in_transaction() else connection.begin()
    try:
        _require_savepoints(connection)
        connection.execute(select(func.set_config("lock_timeout", LOCK_TIMEOUT, True)))
        role = str(connection.execute(text("SELECT current_user")).scalar_one())
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
        findings = audit(connection, app_role=app_role)
        ids = _tenant_ids(connection, tenants)
        found = scoped_tables(connection)
        with new_session(connection, role) as unset:
            cells = [
                cell
                for scoped in found
                for cell in TableProbe(connection, scoped, ids, unset).run()
            ]
    finally:
        outer.rollback()
    url = connection.engine.url.set(password=None).render_as_string(hide_password=False)
    return DatabaseMatrix(
        clock.now(),
        url,
        role,
        version,
        tuple(ids),
        tuple(t.qualified for t in found),
        tuple(cells),
        tuple(findings),
    )


def access_matrix_for_url(
    url: str,
    *,
    tenants: Sequence[str] | None = None,
    app_role: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DatabaseMatrix:
    """Connect to ``url`` once and build :func:`access_matrix`. An async driver's URL
    (``postgresql+asyncpg://``, ``postgresql+psycopg`` is sync here) runs every cell
    through that driver, as an async service's sessions would reach the database."""
    if make_url(url).get_dialect().is_async:
        return asyncio.run(_through_async_driver(url, tenants, app_role, clock))
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return access_matrix(connection, tenants=tenants, app_role=app_role, clock=clock)
    finally:
        engine.dispose()


async def _through_async_driver(
    url: str, tenants: Sequence[str] | None, app_role: str | None, clock: Clock
) -> DatabaseMatrix:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: access_matrix(sync, tenants=tenants, app_role=app_role, clock=clock)
            )
    finally:
        await engine.dispose()


def _require_savepoints(connection: Connection) -> None:
    # In autocommit mode every statement would commit: refuse before any write runs.
    try:
        with rolled_back(connection):
            pass
    except DBAPIError as exc:
        raise MatrixError(
            f"the connection cannot hold a transaction (autocommit?): {failure_of(exc).message}"
        ) from None


def _tenant_ids(connection: Connection, tenants: Sequence[str] | None) -> list[str]:
    if tenants is None:
        try:
            with rolled_back(connection):
                tenants = list(
                    connection.execute(
                        select(tenants_table.c.id).order_by(tenants_table.c.id)
                    ).scalars()
                )
        except DBAPIError as exc:
            raise MatrixError(
                f"no tenants given and the registry table {tenants_table.name} "
                f"cannot be read ({failure_of(exc).message}): pass --tenant ID "
                "(at least one)"
            ) from None
        if not tenants:
            raise MatrixError(
                f"no tenants given and the registry table {tenants_table.name} "
                "is empty: pass --tenant ID (at least one)"
            )
    ids = list(dict.fromkeys(tenants))
    if not ids:
        raise MatrixError("no tenants given: pass --tenant ID (at least one)")
    reserved = [t for t in ids if t in ("", NONE, UNSET, OWN)]
    if reserved:
        raise MatrixError(f"{reserved[0]!r} cannot be a tenant id in the matrix")
    return ids
