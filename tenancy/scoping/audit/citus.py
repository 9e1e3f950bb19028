"""Readiness for sharding by tenant (Citus), reported as warnings, never as failures.

Citus distributes a table by one column, here ``tenant_id``. A distributed table's
primary key and unique constraints must include the distribution column, and a foreign
key between two distributed tables must too (the rows it joins then live on one node);
the same rules keep each tenant's rows self-contained today. So for every tenant-owned
table: a primary key, unique constraint or unique index without ``tenant_id`` is
[citus-unique], a foreign key to another tenant-owned table without ``tenant_id`` on both
sides is [citus-foreign-key]. Foreign keys to tables without ``tenant_id`` are fine:
those become reference tables, copied to every node.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from tenancy.scoping.audit.model import SCOPED_TABLES, Finding

_UNIQUE = text("""
    SELECT ic.relname AS name, i.indisprimary,
           bool_or(a.attname = 'tenant_id') AS has_tenant
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = CAST(:oid AS oid) AND i.indisunique
    GROUP BY ic.relname, i.indisprimary
    ORDER BY ic.relname
""")
_FOREIGN_KEYS = text("""
    SELECT con.conname AS name, tn.nspname || '.' || t.relname AS target,
           EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = con.confrelid
                   AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS target_owned,
           EXISTS (SELECT 1 FROM unnest(con.conkey, con.confkey) AS k(mine, theirs)
                   JOIN pg_attribute ma ON ma.attrelid = con.conrelid AND ma.attnum = k.mine
                   JOIN pg_attribute ta ON ta.attrelid = con.confrelid AND ta.attnum = k.theirs
                   WHERE ma.attname = 'tenant_id' AND ta.attname = 'tenant_id') AS pairs_tenant
    FROM pg_constraint con JOIN pg_class t ON t.oid = con.confrelid
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
    WHERE con.conrelid = CAST(:oid AS oid) AND con.contype = 'f'
    ORDER BY con.conname
""")


def citus_findings(connection: Connection) -> list[Finding]:
    """[citus-unique] and [citus-foreign-key] for every tenant-owned table (see module)."""
    findings: list[Finding] = []
    for oid, name, *_ in connection.execute(SCOPED_TABLES):
        for index, primary, has_tenant in connection.execute(_UNIQUE, {"oid": oid}):
            if not has_tenant:
                kind = "primary key" if primary else "unique index"
                findings.append(
                    Finding(
                        "citus-unique",
                        name,
                        f"{kind} {index} lacks tenant_id: a distributed table cannot keep it",
                    )
                )
        for constraint, target, target_owned, pairs in connection.execute(
            _FOREIGN_KEYS, {"oid": oid}
        ):
            if target_owned and not pairs:
                findings.append(
                    Finding(
                        "citus-foreign-key",
                        name,
                        f"foreign key {constraint} to {target} does not pair tenant_id "
                        "with tenant_id: the rows would not be co-located",
                    )
                )
    return findings
