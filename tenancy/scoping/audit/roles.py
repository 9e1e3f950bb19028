"""The application role's checks: superuser or BYPASSRLS [app-role], memberships that
escape RLS [app-role-membership], and a default tenant setting [tenant-setting-default].

Apart from the table checks because they read roles and settings, not tables: each runs
once per audit, whatever the number of scoped tables.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from tenancy.scoping.audit.model import Finding

_ROLE = text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :role")
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


def role_findings(connection: Connection, role: str) -> list[Finding]:
    """[app-role]: ``role`` exists and is neither superuser nor BYPASSRLS."""
    row = connection.execute(_ROLE, {"role": role}).first()
    if row is None:
        return [Finding("app-role", role, "no such role")]
    findings = []
    if row.rolsuper:
        findings.append(Finding("app-role", role, "is a superuser: RLS never applies"))
    if row.rolbypassrls:
        findings.append(Finding("app-role", role, "has BYPASSRLS"))
    return findings


def membership_findings(
    connection: Connection, role: str, owned: dict[str, list[str]]
) -> list[Finding]:
    """[app-role-membership]: no role ``role`` can ``SET ROLE`` to (through any chain)
    is superuser, BYPASSRLS or the owner of a scoped table (``owned``: owner -> tables)."""
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


def default_findings(connection: Connection, role: str, setting: str) -> list[Finding]:
    """[tenant-setting-default]: a new session of ``role`` does not start with
    ``setting`` set to a tenant by a role or database default."""
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
