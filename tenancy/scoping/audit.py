"""Audit a live PostgreSQL database's tenant isolation set-up.

Read-only checks against ``pg_catalog``; each problem is a :class:`Finding`. A *scoped*
table is a table or partitioned table with a ``tenant_id`` column outside the system
schemas. An empty list means every rule below holds (``check`` names in brackets):

- every scoped table has RLS enabled [rls-enabled] *and* forced [rls-forced], and at least
  one policy [rls-policy]; every policy's USING and WITH CHECK reads the tenant setting
  [rls-policy-setting] and is not ``true`` or ``1 = 1`` [rls-policy-always-true];
- no policy turns a setting that was never set (NULL) into a match
  [rls-policy-null-setting]: a heuristic on ``pg_get_expr``'s text, flagging ``IS NULL``,
  ``IS NOT FALSE``, ``IS NOT TRUE``, ``IS UNKNOWN`` or ``IS [NOT] DISTINCT FROM`` inside a
  parenthesised group that reads the setting, and ``COALESCE`` over the setting with a
  fallback that is not a constant (``COALESCE(setting, '')`` and the shipped
  ``NULLIF(setting, '')`` pass). The database matrix's ``unset`` cells are the
  authoritative check: they run on a brand-new connection where the setting is NULL;
- the application role is neither superuser nor BYPASSRLS [app-role], owns no scoped
  table [app-role-owns-table], and holds no TRUNCATE or REFERENCES on one (RLS does not
  cover those) [app-role-privilege];
- the application role is not a member, directly or through any chain of grants, of a
  role that is superuser, BYPASSRLS or the owner of a scoped table
  [app-role-membership]. ``SET ROLE`` works for NOINHERIT members too, so every
  membership counts (on PostgreSQL 16+ also a grant made ``WITH SET FALSE, INHERIT
  FALSE``, which is conservative: such a grant escalates nothing);
- a fresh session of the application role does not start inside a tenant
  [tenant-setting-default]: the effective default of the setting from
  ``pg_db_role_setting`` (``ALTER ROLE app IN DATABASE db SET``, ``ALTER ROLE app SET``,
  ``ALTER DATABASE db SET`` / ``ALTER ROLE ALL IN DATABASE db SET``, ``ALTER ROLE ALL
  SET``, most specific first, as PostgreSQL applies them) is unset or empty. Defaults of
  roles the application role is a member of are not read: PostgreSQL applies only the
  login role's own defaults, and ``SET ROLE`` applies none. A value from
  ``postgresql.conf``, ``ALTER SYSTEM`` or the client's ``options`` is not seen here (the
  matrix's ``unset`` cells see it);
- every view reading a scoped table is ``security_invoker``, spelled in any way
  PostgreSQL's ``parse_bool`` accepts as true (otherwise it runs as its owner)
  [view-not-security-invoker];
- no SECURITY DEFINER function owned by a superuser or BYPASSRLS role mentions a scoped
  table by name [security-definer];
- no SECURITY DEFINER PL/pgSQL function runs dynamic SQL (``EXECUTE`` outside comments
  and string literals) when its owner is superuser, BYPASSRLS, or has the privileges of a
  scoped table's owner [security-definer-dynamic-sql]: the name match above cannot see a
  table named at run time. Owners count even under FORCE: the owner may ``ALTER TABLE ...
  NO FORCE`` / ``DISABLE ROW LEVEL SECURITY`` or drop the policy, and a dynamic string is
  where a caller's text becomes such a statement. Other languages, and invoker functions
  called from a definer, are not inspected.
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
    SELECT n.nspname || '.' || p.proname AS name, p.prosrc, r.rolsuper, r.rolbypassrls,
           l.lanname, r.rolname AS owner
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_roles r ON r.oid = p.proowner JOIN pg_language l ON l.oid = p.prolang
    WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY name
""")
_HAS_OWNER_RIGHTS = text("SELECT pg_has_role(:member, :owner, 'USAGE')")
# Every role reachable from the app role through pg_auth_members, with the path taken;
# ``path`` guards against cycles (PostgreSQL refuses them, the query does not rely on it).
_MEMBERSHIPS = text("""
    WITH RECURSIVE chain(roleid, path) AS (
        SELECT m.roleid, ARRAY[m.roleid] FROM pg_auth_members m JOIN pg_roles a
            ON a.oid = m.member WHERE a.rolname = :role
        UNION ALL
        SELECT m.roleid, c.path || m.roleid FROM pg_auth_members m JOIN chain c
            ON m.member = c.roleid WHERE m.roleid <> ALL(c.path)
    )
    SELECT r.rolname, r.rolsuper, r.rolbypassrls,
           ARRAY(SELECT pg_get_userbyid(x) FROM unnest(c.path) WITH ORDINALITY AS p(x, i)
                 ORDER BY p.i) AS via
    FROM chain c JOIN pg_roles r ON r.oid = c.roleid
    ORDER BY cardinality(c.path), r.rolname
""")
# Ordered as PostgreSQL applies them at login: the first row is the effective default.
_SETTING_DEFAULTS = text("""
    SELECT s.setrole <> 0 AS for_role, s.setdatabase <> 0 AS in_database,
           substr(c.entry, strpos(c.entry, '=') + 1) AS value
    FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) AS c(entry)
    WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
      AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = :role))
      AND lower(split_part(c.entry, '=', 1)) = lower(:setting)
    ORDER BY s.setrole = 0, s.setdatabase = 0
""")


def audit(
    connection: Connection, *, app_role: str | None = None, setting: str = TENANT_SETTING
) -> list[Finding]:
    """Check the database behind ``connection``; ``app_role`` defaults to the connecting
    role (connect as the application to audit what the application can do)."""
    role = app_role or str(connection.execute(text("SELECT current_user")).scalar_one())
    findings = _role_findings(connection, role)
    tables = connection.execute(_SCOPED_TABLES).all()
    owned: dict[str, list[str]] = {}
    for oid, name, enabled, forced, owner, *_ in tables:
        owned.setdefault(owner, []).append(name)
        findings += _table_findings(connection, oid, name, enabled, forced, setting)
        if owner == role:
            findings.append(
                Finding(
                    "app-role-owns-table",
                    name,
                    f"owned by the application role {role!r}: owners can disable RLS",
                )
            )
        for privilege in ("TRUNCATE", "REFERENCES"):
            if connection.execute(
                _PRIVILEGE, {"role": role, "oid": oid, "privilege": privilege}
            ).scalar():
                findings.append(
                    Finding(
                        "app-role-privilege",
                        name,
                        f"{role!r} holds {privilege}, which RLS does not cover",
                    )
                )
        for view, options in connection.execute(_VIEWS, {"oid": oid}):
            if not _is_invoker(options):
                findings.append(
                    Finding(
                        "view-not-security-invoker", view, f"reads {name} with its owner's rights"
                    )
                )
    findings += _membership_findings(connection, role, owned)
    findings += _default_findings(connection, role, setting)
    findings += _definer_findings(connection, [name for _, name, *_ in tables], owned)
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
    return [
        ScopedTable(row.oid, row.schema, row.relname) for row in connection.execute(_SCOPED_TABLES)
    ]


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


def _membership_findings(
    connection: Connection, role: str, owned: dict[str, list[str]]
) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[str] = set()
    for name, is_super, bypass, via in connection.execute(_MEMBERSHIPS, {"role": role}):
        powers = [label for label, held in (("superuser", is_super), ("BYPASSRLS", bypass)) if held]
        if name in owned:
            powers.append(f"owner of {', '.join(owned[name])}")
        if powers and name not in seen:  # rows come shortest path first: report that one
            seen.add(name)
            chain = " -> ".join([role, *via])
            findings.append(
                Finding(
                    "app-role-membership",
                    role,
                    f"member of {name!r} ({'; '.join(powers)}) via {chain}: "
                    f"SET ROLE {name} escapes RLS",
                )
            )
    return findings


def _default_findings(connection: Connection, role: str, setting: str) -> list[Finding]:
    row = connection.execute(_SETTING_DEFAULTS, {"role": role, "setting": setting}).first()
    if row is None or row.value == "":
        return []  # an empty default reads like the unset setting: it matches no tenant
    source = (
        f"ALTER ROLE {role} IN DATABASE"
        if row.for_role and row.in_database
        else f"ALTER ROLE {role}"
        if row.for_role
        else "ALTER DATABASE (or ALTER ROLE ALL IN DATABASE)"
        if row.in_database
        else "ALTER ROLE ALL"
    )
    return [
        Finding(
            "tenant-setting-default",
            role,
            f"{source} SET {setting} = {row.value!r}: every new session starts "
            "inside that tenant before the application sets one",
        )
    ]


def _table_findings(
    connection: Connection, oid: int, name: str, enabled: bool, forced: bool, setting: str
) -> list[Finding]:
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
                findings.append(
                    Finding(
                        "rls-policy-always-true",
                        name,
                        f"policy {policy.polname!r} {label} is always true",
                    )
                )
            elif setting not in expr:
                findings.append(
                    Finding(
                        "rls-policy-setting",
                        name,
                        f"policy {policy.polname!r} {label} does not read {setting!r}",
                    )
                )
            elif construct := _null_admitting(expr, setting):
                findings.append(
                    Finding(
                        "rls-policy-null-setting",
                        name,
                        f"policy {policy.polname!r} {label} uses {construct} "
                        f"on {setting!r}: it may admit rows when the setting "
                        "was never set (run tenancy db matrix)",
                    )
                )
    return findings


def _definer_findings(
    connection: Connection, tables: list[str], owned: dict[str, list[str]]
) -> list[Finding]:
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
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\w+|::|\S")
_NULL_TESTS = (
    ("IS", "NULL"),
    ("IS", "NOT", "FALSE"),
    ("IS", "NOT", "TRUE"),
    ("IS", "UNKNOWN"),
    ("IS", "DISTINCT", "FROM"),
    ("IS", "NOT", "DISTINCT", "FROM"),
)


def _null_admitting(expr: str, setting: str) -> str | None:
    """The construct that may turn a NULL setting into a match, or None.

    ``pg_get_expr`` parenthesises every test it prints, so the group around an ``IS ...``
    test is that test with its operands.
    """
    tokens = _TOKEN.findall(expr)
    upper = [t.upper() for t in tokens]
    call = ["CURRENT_SETTING", "(", f"'{setting.upper()}'"]

    def reads_setting(start: int, end: int) -> bool:
        return any(upper[i : i + 3] == call for i in range(start, end))

    for i, word in enumerate(upper):
        for test in _NULL_TESTS:
            if tuple(upper[i : i + len(test)]) == test:
                start, end = _group(upper, i)
                if reads_setting(start, end):
                    return " ".join(test)
        if word == "COALESCE" and upper[i + 1 : i + 2] == ["("]:
            start, end = _group(upper, i + 2)
            args, depth, begin = [], 0, start
            for j in range(start, end):
                depth += {"(": 1, ")": -1}.get(upper[j], 0)
                if depth == 0 and upper[j] == ",":
                    args.append((begin, j))
                    begin = j + 1
            args.append((begin, end))
            if any(reads_setting(*a) for a in args) and not all(
                reads_setting(*a) or _constant(tokens[a[0] : a[1]]) for a in args
            ):
                return "COALESCE with a non-constant fallback"
    return None


def _group(tokens: list[str], index: int) -> tuple[int, int]:
    """The token range inside the innermost parentheses around ``index`` (or all)."""
    depth, start = 0, 0
    for i in range(index - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(tokens[i], 0)
        if depth < 0:
            start = i + 1
            break
    depth = 0
    for i in range(index, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        if depth < 0:
            return start, i
    return start, len(tokens)


def _constant(tokens: list[str]) -> bool:
    """A literal, optionally cast: ``''::text``, ``'x'``, ``NULL``, ``0``."""
    head, rest = tokens[:1], tokens[1:]
    literal = bool(head) and (
        head[0].startswith("'") or head[0].isdigit() or head[0].upper() == "NULL"
    )
    return literal and all(t == "::" or t.isidentifier() for t in rest)


def _always_true(expr: str) -> bool:
    return expr.strip().strip("()").strip().lower() in ("true", "1 = 1")


# PostgreSQL's parse_bool: a non-empty prefix of true/yes/false/no, on/off (off may be
# "of"), 1/0, any case. reloptions keep the spelling given (``security_invoker=Ye``).
_TRUE = {"on", "1", *("true"[:n] for n in range(1, 5)), *("yes"[:n] for n in range(1, 4))}


def _is_invoker(options: list[str] | None) -> bool:
    for option in options or ():
        name, _, value = option.partition("=")
        if name.strip().lower() == "security_invoker":
            return value.strip().lower() in _TRUE
    return False
