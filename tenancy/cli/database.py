"""``tenancy db``: audit a live PostgreSQL database and prove its RLS cell by cell."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from tenancy.cli.common import EXIT_ERROR, EXIT_USAGE, print_error

if TYPE_CHECKING:
    from tenancy.testing.dbmatrix import DatabaseMatrix


def db_audit_command(args: argparse.Namespace) -> int:
    """``tenancy db audit``: print the live auditor's findings; exit 1 on any. With
    ``--citus``, warnings for what would keep tables from being distributed by tenant."""
    from sqlalchemy import create_engine

    from tenancy.scoping.audit import audit
    from tenancy.scoping.audit.citus import citus_findings

    engine = create_engine(args.url)
    try:
        with engine.connect() as conn:
            findings = audit(conn, app_role=args.app_role)
            warnings = citus_findings(conn) if args.citus else []
    finally:
        engine.dispose()
    for warning in warnings:  # readiness for sharding: reported, never failing the audit
        print(f"WARN {warning.check}: {warning.subject}: {warning.message}")
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} finding(s): tenant isolation is NOT guaranteed", file=sys.stderr)
        return EXIT_ERROR
    print(
        "OK: every scoped table is under forced RLS on the tenant setting; "
        "the application role cannot bypass it"
    )
    return 0


def db_matrix_command(args: argparse.Namespace) -> int:
    """Exit 0 when isolation is proved, 1 on a leak or audit finding, 2 on errors only or
    bad input (one line on stderr)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tenancy.testing.dbmatrix import MatrixError, access_matrix_for_url

    try:
        matrix = access_matrix_for_url(args.url, tenants=args.tenant, app_role=args.app_role)
    except (MatrixError, SQLAlchemyError, ValueError) as exc:
        print_error(exc, hide=[args.url])  # SQLAlchemy echoes a URL it cannot parse
        return EXIT_USAGE
    to_stdout = args.json == "-"
    if args.json:
        document = json.dumps(matrix.to_json(), indent=2) + "\n"
        if to_stdout:
            sys.stdout.write(document)
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as out:
                    out.write(document)
            except OSError as exc:
                print(f"tenancy: error: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
                return EXIT_USAGE
    report = sys.stderr if to_stdout else sys.stdout
    if not (args.quiet or to_stdout):
        for line in _matrix_lines(matrix):
            print(line, file=report)
    summary = matrix.summary
    leaks = summary["leaked"] + summary["findings"]
    verdict = (
        "OK: RLS held in every cell"
        if matrix.ok
        else "tenant isolation is NOT guaranteed"
        if leaks
        else "errors: isolation NOT proved"
    )
    print(
        f"{len(matrix.tables)} table(s), {len(matrix.tenants)} tenant(s): "
        + ", ".join(f"{n} {k}" for k, n in summary.items())
        + f": {verdict}",
        file=report,
    )
    if leaks:
        return EXIT_ERROR
    return EXIT_USAGE if summary["error"] else 0


def _matrix_lines(matrix: DatabaseMatrix) -> list[str]:
    # Tenant ids are long (UUIDs): the table names them T1, T2, ... under a legend.
    labels = {tenant: f"T{n}" for n, tenant in enumerate(matrix.tenants, 1)}
    rows = [("TABLE", "OPERATION", "SETTING", "TARGET", "OUTCOME", "ROWS", "DETAIL")]
    rows += [
        (
            c.table,
            c.operation,
            labels.get(c.setting, c.setting),
            labels.get(c.target, c.target),
            str(c.outcome),
            "-" if c.rows is None else str(c.rows),
            c.detail,
        )
        for c in matrix.cells
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    legend = ", ".join(f"{label} = {tenant}" for tenant, label in labels.items())
    return [
        f"tenants: {legend}",
        "no tenant: setting none = '' in the transaction, unset = never set (a new session)",
        *(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[6]
            for row in rows
        ),
        *(str(finding) for finding in matrix.findings),
    ]
