"""The audit itself: one pass over the scoped tables, asking each kind of check in turn.

Apart from the checks so that what :func:`audit` covers, and in which order, reads on one
screen; the rules themselves are in :mod:`.roles`, :mod:`.policies` and :mod:`.objects`.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from tenancy.scoping.audit.model import SCOPED_TABLES, Finding
from tenancy.scoping.audit.objects import VIEWS, definer_findings, is_invoker
from tenancy.scoping.audit.policies import table_findings
from tenancy.scoping.audit.roles import default_findings, membership_findings, role_findings
from tenancy.scoping.rls import TENANT_SETTING

_PRIVILEGE = text("SELECT has_table_privilege(:role, CAST(:oid AS oid), :privilege)")


def audit(
    connection: Connection, *, app_role: str | None = None, setting: str = TENANT_SETTING
) -> list[Finding]:
    """Check the database behind ``connection``; ``app_role`` defaults to the connecting
    role (connect as the application to audit what the application can do)."""
    role = app_role or str(connection.execute(text("SELECT current_user")).scalar_one())
    findings = role_findings(connection, role)
    tables = connection.execute(SCOPED_TABLES).all()
    owned: dict[str, list[str]] = {}
    for oid, name, enabled, forced, owner, *_ in tables:
        owned.setdefault(owner, []).append(name)
        findings += table_findings(connection, oid, name, enabled, forced, setting)
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
        for view, options in connection.execute(VIEWS, {"oid": oid}):
            if not is_invoker(options):
                findings.append(
                    Finding(
                        "view-not-security-invoker", view, f"reads {name} with its owner's rights"
                    )
                )
    findings += membership_findings(connection, role, owned)
    findings += default_findings(connection, role, setting)
    findings += definer_findings(connection, [name for _, name, *_ in tables], owned)
    return findings


def audit_engine(engine: Engine, *, app_role: str | None = None) -> list[Finding]:
    """Connect once and :func:`audit`; for ``TenancyMiddleware(startup_audit=...)``."""
    with engine.connect() as connection:
        return audit(connection, app_role=app_role)
