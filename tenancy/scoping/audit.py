"""Audit a live PostgreSQL database's tenant isolation set-up.

Read-only checks against ``pg_catalog``; each problem is a :class:`Finding`. An empty list
means every rule below holds:

- every table with a ``tenant_id`` column has RLS enabled *and* forced, and at least one
  policy, and every policy on it reads the tenant setting and is not always true;
- the application role is neither superuser nor BYPASSRLS, owns no scoped table, and holds
  no TRUNCATE or REFERENCES on one (RLS does not cover those);
- every view reading a scoped table is ``security_invoker`` (otherwise it runs as its owner);
- no SECURITY DEFINER function owned by a bypassing role mentions a scoped table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from tenancy.scoping.rls import TENANT_SETTING


@dataclass(frozen=True, slots=True)
class Finding:
    """One violated rule: which ``check``, on which database ``subject``, and why."""

    check: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"FAIL {self.check}: {self.subject}: {self.message}"


_SCOPED_TABLES = text("""
    SELECT c.oid, n.nspname || '.' || c.relname AS name, c.relrowsecurity, c.relforcerowsecurity,
           pg_get_userbyid(c.relowner) AS owner, n.nspname AS schema, c.relname AS relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY name
""")
_POLICIES = text("""
    SELECT polname, polpermissive, pg_get_expr(polqual, polrelid) AS using_expr,
           pg_get_expr(polwithcheck, polrelid) AS check_expr
    FROM pg_policy WHERE polrelid = :oid
""")
_ROLE = text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :role")
_PRIVILEGE = text("SELECT has_table_privilege(:role, CAST(:oid AS oid), :privilege)")
_VIEWS = text("""
    SELECT DISTINCT vn.nspname || '.' || v.relname AS view, v.reloptions
    FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
    JOIN pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
    WHERE v.relkind IN ('v', 'm') AND d.refobjid = CAST(:oid AS oid)
""")
_DEFINER_FUNCTIONS = text("""
    SELECT n.nspname || '.' || p.proname AS name, p.prosrc, r.rolsuper, r.rolbypassrls
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_roles r ON r.oid = p.proowner
    WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
""")


def audit(connection: Connection, *, app_role: str | None = None,
          setting: str = TENANT_SETTING) -> list[Finding]:
    """Check the database behind ``connection``; ``app_role`` defaults to the connecting
    role (connect as the application to audit what the application can do)."""
    role = app_role or str(connection.execute(text("SELECT current_user")).scalar_one())
    findings = _role_findings(connection, role)
    tables = connection.execute(_SCOPED_TABLES).all()
    for oid, name, enabled, forced, owner, *_ in tables:
        findings += _table_findings(connection, oid, name, enabled, forced, setting)
        if owner == role:
            findings.append(Finding("app-role-owns-table", name,
                                    f"owned by the application role {role!r}: owners "
                                    "can disable RLS"))
        for privilege in ("TRUNCATE", "REFERENCES"):
            if connection.execute(_PRIVILEGE, {"role": role, "oid": oid,
                                               "privilege": privilege}).scalar():
                findings.append(Finding("app-role-privilege", name,
                                        f"{role!r} holds {privilege}, which RLS does not cover"))
        for view, options in connection.execute(_VIEWS, {"oid": oid}):
            if not _is_invoker(options):
                findings.append(Finding("view-not-security-invoker", view,
                                        f"reads {name} with its owner's rights"))
    findings += _definer_findings(connection, [name for _, name, *_ in tables])
    return findings


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
    return [ScopedTable(row.oid, row.schema, row.relname)
            for row in connection.execute(_SCOPED_TABLES)]


def audit_engine(engine: Engine, *, app_role: str | None = None) -> list[Finding]:
    """Connect once and :func:`audit`; for ``TenancyMiddleware(startup_audit=...)``."""
    with engine.connect() as connection:
        return audit(connection, app_role=app_role)


def _role_findings(connection: Connection, role: str) -> list[Finding]:
    row = connection.execute(_ROLE, {"role": role}).first()
    if row is None:
        return [Finding("app-role", role, "no such role")]
    findings = []
    if row.rolsuper:
        findings.append(Finding("app-role", role, "is a superuser: RLS never applies"))
    if row.rolbypassrls:
        findings.append(Finding("app-role", role, "has BYPASSRLS"))
    return findings


def _table_findings(connection: Connection, oid: int, name: str, enabled: bool,
                    forced: bool, setting: str) -> list[Finding]:
    findings = []
    if not enabled:
        findings.append(Finding("rls-enabled", name, "row level security is not enabled"))
    if not forced:
        findings.append(Finding("rls-forced", name, "row level security is not forced"))
    policies = connection.execute(_POLICIES, {"oid": oid}).all()
    if enabled and not policies:
        findings.append(Finding("rls-policy", name, "no policy (every row is hidden)"))
    for policy in policies:
        for label, expr in (("USING", policy.using_expr), ("WITH CHECK", policy.check_expr)):
            if expr is None and label == "WITH CHECK":
                continue  # PostgreSQL applies USING to writes when WITH CHECK is absent
            if expr is None or _always_true(expr):
                findings.append(Finding("rls-policy-always-true", name,
                                        f"policy {policy.polname!r} {label} is always true"))
            elif setting not in expr:
                findings.append(Finding("rls-policy-setting", name,
                                        f"policy {policy.polname!r} {label} does not read "
                                        f"{setting!r}"))
    return findings


def _definer_findings(connection: Connection, tables: list[str]) -> list[Finding]:
    findings = []
    bare_names = {t.split(".", 1)[1] for t in tables}
    for name, source, is_super, bypass in connection.execute(_DEFINER_FUNCTIONS):
        if not (is_super or bypass):
            continue
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source or ""))
        touched = sorted(bare_names & words)
        if touched:
            findings.append(Finding("security-definer", name,
                                    f"SECURITY DEFINER owned by a bypassing role touches "
                                    f"{', '.join(touched)}"))
    return findings


def _always_true(expr: str) -> bool:
    return expr.strip().strip("()").strip().lower() in ("true", "1 = 1")


def _is_invoker(options: list[str] | None) -> bool:
    return any(o.lower() in ("security_invoker=true", "security_invoker=on",
                             "security_invoker=1") for o in options or ())
