"""The checks of database objects that run with their owner's rights: views that read a
scoped table without ``security_invoker`` [view-not-security-invoker], and SECURITY
DEFINER functions that name a scoped table [security-definer] or run dynamic SQL
[security-definer-dynamic-sql].

Its own module because these rules read ``pg_proc`` and ``reloptions``, not policies, and
carry their own parsers (PL/pgSQL comments and literals, PostgreSQL's booleans).
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from tenancy.scoping.audit.model import Finding

VIEWS = text("""
    SELECT DISTINCT vn.nspname || '.' || v.relname AS view, v.reloptions
    FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
    JOIN pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
    WHERE v.relkind IN ('v', 'm') AND d.refobjid = CAST(:oid AS oid)
""")
_DEFINER_FUNCTIONS = text("""
    SELECT n.nspname || '.' || p.proname AS name, p.prosrc, r.rolsuper, r.rolbypassrls,
           l.lanname, r.rolname AS owner
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_roles r ON r.oid = p.proowner JOIN pg_language l ON l.oid = p.prolang
    WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY name
""")
_HAS_OWNER_RIGHTS = text("SELECT pg_has_role(:member, :owner, 'USAGE')")


def definer_findings(
    connection: Connection, tables: list[str], owned: dict[str, list[str]]
) -> list[Finding]:
    """[security-definer] and [security-definer-dynamic-sql] over every SECURITY DEFINER
    function; ``tables`` are the scoped tables' qualified names, ``owned`` maps each owner
    to its tables."""
    findings = []
    bare_names = {t.split(".", 1)[1] for t in tables}
    for name, source, is_super, bypass, language, owner in connection.execute(_DEFINER_FUNCTIONS):
        if is_super or bypass:
            words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source or ""))
            touched = sorted(bare_names & words)
            if touched:
                findings.append(
                    Finding(
                        "security-definer",
                        name,
                        f"SECURITY DEFINER owned by a bypassing role touches {', '.join(touched)}",
                    )
                )
        if language != "plpgsql" or not _EXECUTE.search(_CODE_ONLY.sub(" ", source or "")):
            continue
        rights = (
            "superuser"
            if is_super
            else "BYPASSRLS"
            if bypass
            else _owner_rights(connection, owner, owned)
        )
        if rights:
            findings.append(
                Finding(
                    "security-definer-dynamic-sql",
                    name,
                    f"SECURITY DEFINER runs dynamic SQL (EXECUTE) as {owner!r}, "
                    f"which has {rights}: no table name to check",
                )
            )
    return findings


def _owner_rights(connection: Connection, role: str, owned: dict[str, list[str]]) -> str | None:
    """Which scoped table's owner ``role`` acts as (itself, or by inherited membership)."""
    for owner, names in owned.items():
        if connection.execute(_HAS_OWNER_RIGHTS, {"member": role, "owner": owner}).scalar():
            return f"the rights of {names[0]}'s owner {owner!r}"
    return None


# PL/pgSQL comments, string literals and dollar-quoted strings: EXECUTE inside them is text.
_CODE_ONLY = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\$([A-Za-z_]\w*|)\$.*?\$\1\$", re.DOTALL
)
_EXECUTE = re.compile(r"\bEXECUTE\b", re.IGNORECASE)

# PostgreSQL's parse_bool: a non-empty prefix of true/yes/false/no, on/off (off may be
# "of"), 1/0, any case. reloptions keep the spelling given (``security_invoker=Ye``).
_TRUE = {"on", "1", *("true"[:n] for n in range(1, 5)), *("yes"[:n] for n in range(1, 4))}


def is_invoker(options: list[str] | None) -> bool:
    """Whether a view's ``reloptions`` make it ``security_invoker`` (any spelling of true
    that PostgreSQL accepts)."""
    for option in options or ():
        name, _, value = option.partition("=")
        if name.strip().lower() == "security_invoker":
            return value.strip().lower() in _TRUE
    return False
