"""``tenancy db``: audit and migrate a live PostgreSQL database."""

from __future__ import annotations

import argparse
import sys

from tenancy.cli.common import EXIT_ERROR


def db_audit_command(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from tenancy.scoping.audit import audit

    engine = create_engine(args.url)
    try:
        with engine.connect() as conn:
            findings = audit(conn, app_role=args.app_role)
    finally:
        engine.dispose()
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} finding(s): tenant isolation is NOT guaranteed", file=sys.stderr)
        return EXIT_ERROR
    print("OK: every scoped table is under forced RLS on the tenant setting; "
          "the application role cannot bypass it")
    return 0


def db_migrate_command(args: argparse.Namespace) -> int:
    from services.worklogs.migrate import upgrade

    upgrade(args.url, app_role=args.app_role, sql=args.sql)
    return 0
