"""Driver options for a transaction-pooling PgBouncer in front of PostgreSQL.

In ``pool_mode = transaction`` each transaction may run on another server connection.
The tenant setting is safe there: it is applied with ``set_config(..., true)`` at the start
of every transaction and dies with it. Prepared statements are not: psycopg prepares a
statement after five executions on a client connection, and the next transaction may
land on a server connection where that name does not exist (``InvalidSqlStatementName``)
or already exists (``DuplicatePreparedStatement``). So behind such a pooler, drivers must
not prepare (or must use names no other client uses): :func:`pooler_options`.

Nor can a client connection be reset for the next borrower: it is tied to no server
connection, so a ``RESET`` on it lands on whichever server connection is free (and, on
asyncpg, its prepare and execute may land on two). The pool's reset of the tenant setting
(``rls.reset_setting_on_return``) is therefore off for engines built with these options;
the tenant setting is transaction-local anyway.

PgBouncer 1.21 and later can track protocol-level prepared statements itself
(``max_prepared_statements``); with that set, psycopg's prepared statements work and
these options are not needed. PgBouncer does not reset session-level settings between
clients in transaction mode: code that sets ``tenancy.tenant_id`` at session level
(``SET``, ``set_config(..., false)``) would hand it to the next client's transactions;
``TenantSession`` never does, and ``server_reset_query_always = 1`` with
``server_reset_query = DISCARD ALL`` closes that door for code that might.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from tenancy.errors import ConfigurationError

POOLER_MODES = ("transaction", "session")
POOLER_OPTION = "tenancy_pooler"  # an engine execution option: which pooler it sits behind


def pooler_options(url: str | URL, pooler: str | None) -> dict[str, Any]:
    """Keyword arguments for ``create_engine``/``create_async_engine`` on ``url`` behind a
    pooler in ``pooler`` mode (``None``: no pooler; ``session``: nothing changes)::

        engine = create_engine(url, **pooler_options(url, "transaction"))

    Raises:
        ConfigurationError: an unknown pooler mode.
    """
    if pooler is None or pooler == "session":
        return {}
    if pooler not in POOLER_MODES:
        raise ConfigurationError(f"unknown pooler mode {pooler!r} (transaction or session)")
    return {
        "connect_args": _connect_args(make_url(url).get_driver_name()),
        "execution_options": {POOLER_OPTION: pooler},
    }


def behind_transaction_pooler(engine: Engine) -> bool:
    """Whether ``engine`` was built with :func:`pooler_options` for a transaction pooler."""
    return engine.get_execution_options().get(POOLER_OPTION) == "transaction"


def _connect_args(driver: str) -> dict[str, Any]:
    if driver == "psycopg":  # sync and async: never prepare server-side
        return {"prepare_threshold": None}
    if driver == "asyncpg":  # no statement cache; names unique to this client
        return {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__tenancy_{uuid.uuid4().hex}__",
        }
    return {}
