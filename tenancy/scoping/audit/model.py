"""What the audit reports and what it judges: a :class:`Finding` per violated rule, and
the scoped tables (its own module because the database matrix reads the same set).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True, slots=True)
class Finding:
    """One violated rule: which ``check``, on which database ``subject``, and why."""

    check: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"FAIL {self.check}: {self.subject}: {self.message}"


SCOPED_TABLES = text("""
    SELECT c.oid, n.nspname || '.' || c.relname AS name, c.relrowsecurity, c.relforcerowsecurity,
           pg_get_userbyid(c.relowner) AS owner, n.nspname AS schema, c.relname AS relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY name
""")


@dataclass(frozen=True, slots=True)
class ScopedTable:
    """A table (or partition) with a ``tenant_id`` column: one that RLS must cover.

    ``schema`` and ``name`` are kept apart, unquoted, so callers quote them with their
    dialect's identifier preparer instead of splitting ``qualified`` on a dot.
    """

    oid: int
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        """``schema.name`` as the audit reports it (for display, not for SQL)."""
        return f"{self.schema}.{self.name}"


def scoped_tables(connection: Connection) -> list[ScopedTable]:
    """Every table and partitioned table with a ``tenant_id`` column outside the system
    schemas: the set :func:`audit` judges, ordered by qualified name."""
    return [
        ScopedTable(row.oid, row.schema, row.relname) for row in connection.execute(SCOPED_TABLES)
    ]
