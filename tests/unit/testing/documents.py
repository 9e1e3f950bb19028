"""Hand-made inputs of the evidence pack: probe and database matrices, healthy or broken.

Shaped like ``tenancy probe --out`` and ``tenancy db matrix --json`` documents, written
here so the pack's tests do not depend on a running deployment or database.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tenancy.audit import AuditLog, write_audit_key
from tenancy.authz.policytests import PolicyTestResult, Status
from tenancy.events import SecurityEvent
from tenancy.tenants import TenantRegistry

TENANTS = ("acme", "globex")
ROUTES = ("GET /worklogs", "GET /worklogs/{id}", "POST /worklogs", "DELETE /worklogs/{id}")
ATTACKS = ("cross-identity", "no-token", "alg-none", "tenant-header", "support-no-grant")
ACTORS = {"acme": ("acme-admin", "acme-member"), "globex": ("globex-admin", "globex-member")}
LEAK = {
    "route": "GET /worklogs/{id}",
    "victim": "globex",
    "attack": "tenant-header",
    "actor": "acme-member",
}
DB_TENANTS = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")
DB_TABLES = ("public.worklogs", "public.tenancy_exports")
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")


def probe(*, leaked: bool = False, void: bool = False) -> dict[str, Any]:
    """A probe of 2 tenants x 4 routes x 5 attacks x 2 actors; all enforced unless asked."""
    cells = []
    for route, attack, victim in itertools.product(ROUTES, ATTACKS, TENANTS):
        attacker = next(t for t in TENANTS if t != victim)
        for actor in ACTORS[attacker]:
            cells.append(
                {
                    "route": route,
                    "victim": victim,
                    "attack": attack,
                    "actor": actor,
                    "status": 404,
                    "outcome": "enforced",
                    "detail": "refused",
                }
            )
    if leaked:
        cell = next(c for c in cells if all(c[k] == v for k, v in LEAK.items()))
        cell.update(status=200, outcome="leaked", detail="200 with globex's worklog in the body")
    summary = {
        o: sum(c["outcome"] == o for c in cells) for o in ("enforced", "leaked", "error", "skipped")
    }
    return {
        "kind": "tenancy.probe",
        "version": 1,
        "target": "http://127.0.0.1:8000",
        "started_at": "2026-05-10T10:00:00+00:00",
        "finished_at": "2026-05-10T10:00:12+00:00",
        "duration_s": 12.3,
        "tenants": list(TENANTS),
        "identities": [{"name": a, "tenant": t, "kind": "user"} for t in TENANTS for a in ACTORS[t]]
        + [{"name": "staff-no-grant", "tenant": None, "kind": "support"}],
        "routes": list(ROUTES),
        "void": void,
        "void_reasons": ["acme-admin could not read its own GET /worklogs/{id} (403)"]
        if void
        else [],
        "controls": [
            {
                "identity": a,
                "route": r,
                "status": 403 if void and a == "acme-admin" else 200,
                "ok": not (void and a == "acme-admin"),
                "detail": "",
            }
            for t in TENANTS
            for a in ACTORS[t]
            for r in ROUTES[:2]
        ],
        "cells": cells,
        "summary": summary,
    }


def db_matrix(*, leaked: bool = False, finding: bool = False) -> dict[str, Any]:
    """A database matrix over 2 tables x 4 operations x settings/targets; all enforced or
    denied unless asked."""
    cells = []
    for table, operation in itertools.product(DB_TABLES, OPERATIONS):
        cells.append(
            {
                "table": table,
                "operation": operation,
                "setting": "none",
                "target": "none",
                "outcome": "denied",
                "rows": 0,
                "detail": "no tenant set: refused",
            }
        )
        for setting in DB_TENANTS:
            other = next(t for t in DB_TENANTS if t != setting)
            for target in ("own", other):
                own = target == "own"
                cells.append(
                    {
                        "table": table,
                        "operation": operation,
                        "setting": setting,
                        "target": target,
                        "outcome": "vacuous" if own and operation == "DELETE" else "enforced",
                        "rows": 3 if own else 0,
                        "detail": "",
                    }
                )
    if leaked:
        cells[2].update(outcome="leaked", rows=3, detail="read 3 rows of the other tenant")
    findings = (
        [
            {
                "check": "rls-policy-always-true",
                "subject": "public.tenancy_exports",
                "message": "policy p_all USING (true) admits every row",
            }
        ]
        if finding
        else []
    )
    return {
        "kind": "tenancy.db-matrix",
        "version": 1,
        "generated_at": "2026-05-10T10:01:00+00:00",
        "database": "postgresql+psycopg://app@127.0.0.1/tenancy",
        "role": "tenancy_app",
        "server_version": "15.19",
        "tenants": list(DB_TENANTS),
        "tables": list(DB_TABLES),
        "cells": cells,
        "findings": findings,
        "summary": {
            **{
                o: sum(c["outcome"] == o for c in cells)
                for o in ("enforced", "denied", "leaked", "vacuous", "error")
            },
            "findings": len(findings),
        },
    }


def policy_results(*, failing: bool = False, not_run: bool = False) -> list[PolicyTestResult]:
    results = [
        PolicyTestResult("rego-unit", f"tenancy.authz_test.test_{i}", "opa-go", Status.PASSED)
        for i in range(3)
    ]
    results += [
        PolicyTestResult("case-table", "member reads worklogs", "embedded-rego", Status.PASSED)
    ]
    if failing:
        results[1] = PolicyTestResult(
            "rego-unit",
            "tenancy.authz_test.test_1",
            "opa-go",
            Status.FAILED,
            "evaluated to false, not true",
        )
    if not_run:
        results = [
            PolicyTestResult(
                r.suite,
                r.name,
                r.engine,
                Status.NOT_RUN,
                "opa-golib-python-bindings is not installed",
            )
            if r.suite == "rego-unit"
            else r
            for r in results
        ]
    return results


def demo_data_dir(data_dir: Path, *, tamper: bool = False) -> Path:
    """A demo data directory as ``tenancy demo`` leaves it: the registry, two tenants and
    their audit chains plus the platform's, signed with ``keys/audit.key``. ``tamper``
    rewrites acme's second record afterwards, as an attacker with SQL access would."""
    from sqlalchemy import create_engine

    (data_dir / "keys").mkdir(parents=True, exist_ok=True)
    key_path = data_dir / "keys" / "audit.key"
    write_audit_key(key_path)
    engine = create_engine(f"sqlite:///{data_dir / 'tenancy.db'}")
    try:
        registry = TenantRegistry(engine)
        registry.create_schema()
        tenants = [registry.provision(slug, region="eu-central-1") for slug in TENANTS]
        write_chains(engine, key_path, [t.id for t in tenants])
        if tamper:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE tenancy_audit_events SET actor = 'mallory' "
                        "WHERE tenant_id = :t AND seq = 2"
                    ),
                    {"t": tenants[0].id},
                )
    finally:
        engine.dispose()
    return key_path


def write_chains(engine: Engine, key: Path | bytes, tenant_ids: list[str]) -> None:
    """Three events in each tenant's chain and one in the platform chain, committed."""
    from datetime import UTC, datetime

    log = AuditLog(engine, key, flush_interval=0.01)
    log.create_schema()
    try:
        for tenant_id in tenant_ids:
            for i in range(3):
                log.emit(
                    SecurityEvent(
                        "auth.refused", datetime.now(UTC), tenant_id=tenant_id, actor=f"user{i}"
                    )
                )
        log.emit(SecurityEvent("tenant.provisioned", datetime.now(UTC), actor="cli"))
        log.flush()
    finally:
        log.close()


def with_cell(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``document`` with its first cell changed."""
    changed = copy.deepcopy(document)
    changed["cells"][0].update(changes)
    return changed
