"""PostgreSQL Row-Level Security: the second, independent layer under the ORM scoping.

For every tenant-owned table: ``ENABLE`` and ``FORCE ROW LEVEL SECURITY`` and one policy
whose ``USING`` and ``WITH CHECK`` compare ``tenant_id`` with a transaction-local setting.
An unset setting matches no row and admits no write (``current_setting(name, true)`` is
NULL or empty, never "all rows"). The setting is applied with ``set_config(..., true)`` at
the start of every transaction of a :class:`~tenancy.scoping.TenantSession`, so it dies
with the transaction: safe with pooled connections and PgBouncer transaction mode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table, event, func, select, text

from tenancy import consistency
from tenancy.errors import ConfigurationError

TENANT_SETTING = "tenancy.tenant_id"
POLICY_NAME = "tenancy_tenant_isolation"
_SETTING_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def rls_statements(table: Table, dialect: Dialect, *, setting: str = TENANT_SETTING) -> list[str]:
    """The DDL that puts ``table`` under tenant RLS (identifiers quoted by ``dialect``).

    Needs no connection, so migrations can emit it offline (``alembic upgrade --sql``).
    """
    if "tenant_id" not in table.c:
        raise ConfigurationError(f"{table.name} has no tenant_id column")
    preparer = dialect.identifier_preparer
    return _policy_ddl(preparer.format_table(table), preparer.quote(POLICY_NAME), setting)


def enable_rls(
    connection: Connection, tables: Iterable[Table], *, setting: str = TENANT_SETTING
) -> None:
    """Put every table, and every partition of a partitioned one, under tenant RLS.

    Run as the owner (in a migration). Partitions get their own policy because a
    partition can be queried directly, bypassing its parent's policy.
    """
    policy = connection.dialect.identifier_preparer.quote(POLICY_NAME)
    for table in tables:
        for statement in rls_statements(table, connection.dialect, setting=setting):
            connection.execute(text(statement))
        for partition in partitions_of(connection, table):
            for statement in _policy_ddl(partition, policy, setting):
                connection.execute(text(statement))


def partitions_of(connection: Connection, table: Table) -> list[str]:
    """Every partition below ``table`` (recursively), as PostgreSQL quotes their names."""
    name = connection.dialect.identifier_preparer.format_table(table)
    return list(connection.execute(_PARTITIONS, {"name": name}).scalars())


_PARTITIONS = text(
    "WITH RECURSIVE parts(oid) AS ("
    " SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(:name)"
    " UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN parts p ON i.inhparent = p.oid)"
    " SELECT oid::regclass::text FROM parts"
)


def _policy_ddl(name: str, policy: str, setting: str) -> list[str]:
    if not _SETTING_PATTERN.fullmatch(setting):
        raise ConfigurationError("setting must look like 'namespace.name'")
    # The setting name is validated above and is not request data; it is a constant
    # of the schema, so it appears in the DDL as a literal.
    predicate = f"tenant_id = NULLIF(current_setting('{setting}', true), '')"
    return [
        f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {policy} ON {name}",
        f"CREATE POLICY {policy} ON {name} USING ({predicate}) WITH CHECK ({predicate})",
    ]


def grant_app_role(connection: Connection, role: str, tables: Iterable[Table]) -> None:
    """Grant the application role DML only: no TRUNCATE or REFERENCES, which RLS does
    not cover."""
    for statement in grant_statements(role, tables, connection.dialect):
        connection.execute(text(statement))


def grant_statements(
    role: str,
    tables: Iterable[Table],
    dialect: Dialect,
    *,
    privileges: str = "SELECT, INSERT, UPDATE, DELETE",
) -> list[str]:
    """The GRANT statements of :func:`grant_app_role`, for migrations."""
    preparer = dialect.identifier_preparer
    return [
        f"GRANT {privileges} ON {preparer.format_table(t)} TO {preparer.quote(role)}"
        for t in tables
    ]


def set_tenant(connection: Connection, tenant_id: str, *, setting: str = TENANT_SETTING) -> None:
    """Set the tenant for the current transaction only (``is_local => true``); ``''``
    for none (it also hides a value left at session level for this transaction)."""
    connection.execute(select(func.set_config(setting, tenant_id, True)))


def reset_setting_on_return(engine: Engine) -> None:
    """Reset the tenant setting of every PostgreSQL connection ``engine``'s pool takes
    back (idempotent; ``TenantSession`` and :func:`tenant_transaction` call it).

    Code that sets the setting at session level (``set_config(..., false)`` or ``SET``)
    would otherwise hand that tenant's rows to the next borrower of the connection. The
    reset runs in SQLAlchemy's pool ``reset`` event: roll back, then ``RESET`` in
    autocommit mode; if it fails, the pool discards the connection. Not behind a
    transaction pooler (``tenancy.scoping.pooling``): a client connection there is tied to
    no server connection.
    """
    from tenancy.scoping.pooling import behind_transaction_pooler

    if (
        engine.dialect.name == "postgresql"
        and not behind_transaction_pooler(engine)  # no server connection to reset
        and not event.contains(engine.pool, "reset", _reset_tenant_setting)
    ):
        event.listen(engine.pool, "reset", _reset_tenant_setting)


def _reset_tenant_setting(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    if getattr(reset_state, "terminate_only", False):
        return  # the connection is being closed, not reused
    dbapi_connection.rollback()
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_RESET)
        finally:
            cursor.close()
    finally:
        dbapi_connection.autocommit = autocommit


_RESET = f"RESET {TENANT_SETTING}"  # a constant of the schema, never request data


def confirm_tenant(
    connection: Connection, tenant_id: str, *, setting: str = TENANT_SETTING
) -> None:
    """In consistency mode, report the tenant this transaction is scoped to: on PostgreSQL
    the setting as the database holds it now (read back, not what we meant to set),
    elsewhere ``tenant_id``. Costs one ContextVar lookup when the mode is off.

    Raises:
        LayerMismatch: the request's verified tenant is another one.
    """
    if consistency.active() is None:
        return
    if connection.dialect.name == "postgresql":
        tenant_id = connection.execute(select(func.current_setting(setting, True))).scalar() or ""
    consistency.observe(consistency.DB, tenant_id)


@contextmanager
def tenant_transaction(engine: Engine, tenant_id: str) -> Iterator[Connection]:
    """A transaction for ``tenant_id``'s rows outside the ORM (key and grant stores): on
    PostgreSQL the RLS setting is applied first, local to the transaction. In consistency
    mode it is read back after it is set and again before the commit."""
    reset_setting_on_return(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            set_tenant(conn, tenant_id)
        confirm_tenant(conn, tenant_id)
        yield conn
        confirm_tenant(conn, tenant_id)  # a mismatch here rolls the transaction back


def migration_statements(
    tables: Iterable[Table],
    dialect: Dialect,
    app_role: str | None,
) -> list[str]:
    """What a migration runs on PostgreSQL for new tenant-owned tables: forced RLS and
    DML-only grants to the application role. Nothing on other databases."""
    if dialect.name != "postgresql":
        return []
    if not app_role:
        raise RuntimeError("PostgreSQL migrations need the application role name (app_role)")
    statements: list[str] = []
    for table in tables:
        statements += [
            *rls_statements(table, dialect),
            *grant_statements(app_role, [table], dialect),
        ]
    return statements
