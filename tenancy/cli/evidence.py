"""``tenancy retention``, ``export`` and ``audit``: the evidence around the data."""

from __future__ import annotations

import argparse
import sys

from tenancy.cli.common import EXIT_ERROR
from tenancy.cli.common import settings_of as _settings


def retention_command(args: argparse.Namespace) -> int:
    from services.demo_state import open_audit, open_engine, open_keys, open_registry
    from services.worklogs.store import Worklog
    from tenancy.exports import create_schema as create_exports_schema
    from tenancy.retention import (
        DEFAULT_ERASURE_TABLES,
        RetentionJob,
        erase_tenant_personal_data,
    )
    from tenancy.retention import create_schema as create_retention_schema

    settings = _settings(args)
    registry = open_registry(settings)
    engine = open_engine(settings)
    if settings.uses_sqlite:  # on PostgreSQL the migrations create them, as the owner
        create_retention_schema(engine)
        create_exports_schema(engine)
    audit = open_audit(settings, engine=engine)  # purge counts go to each tenant's trail
    if args.action == "run":
        slugs = {t.id: t.slug for t in registry.list()}
        job = RetentionJob(engine, batch_size=args.batch_size, tenants=lambda: list(slugs),
                           events=audit)
        report = job.run()
        for (tenant_id, data_class), deleted in sorted(report.counts.items()):
            if deleted or args.verbose:
                print(f"{slugs.get(tenant_id, tenant_id)}\t{data_class}\tdeleted={deleted}")
        print(f"retention: {report.total} row(s) deleted; a rerun deletes nothing more")
    elif args.action == "erase":
        tenant = registry.get_by_slug(args.tenant)
        if args.confirm != tenant.slug:
            raise ValueError(f"erasure is irreversible: pass --confirm {tenant.slug}")
        erased = erase_tenant_personal_data(
            tenant.id, engine=engine, keys=open_keys(settings, engine=engine),
            tables=(*DEFAULT_ERASURE_TABLES, Worklog.__table__),  # type: ignore[arg-type]
            requested_by=args.requested_by, events=audit)
        for table, deleted in erased.deleted.items():
            print(f"{tenant.slug}\t{table}\tdeleted={deleted}")
        print(f"{tenant.slug}: personal data erased; keys {erased.keys}. Offboard the "
              f"tenant next: `tenancy tenants offboard {tenant.slug} --reason erasure`")
    audit.close()
    return 0


def export_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.demo_state import open_audit, open_exports, open_registry
    from tenancy.context import Principal, PrincipalKind, TenantContext, bind

    settings = _settings(args)
    tenant = open_registry(settings).get_by_slug(args.tenant)
    audit = open_audit(settings)
    exports = open_exports(settings, events=audit)
    ctx = TenantContext(tenant.id, tenant.slug, settings.region,
                        Principal("tenancy-cli", tenant.id, args.as_subject,
                                  kind=PrincipalKind.SERVICE), "cli")
    with bind(ctx):
        if args.action == "create":
            link = exports.create(args.format)
            print(f"{tenant.slug}\t{link.export_id}\t{link.format}\trows={link.rows}\t"
                  f"expires={link.expires_at.isoformat()}")
            print(link.token)
        else:
            got = exports.download(args.token)
            if args.out == "-":
                sys.stdout.buffer.write(got.content)
            else:
                Path(args.out or got.filename).write_bytes(got.content)
                print(f"{tenant.slug}: wrote {args.out or got.filename} "
                      f"({len(got.content)} bytes)", file=sys.stderr)
    audit.close()  # the export's events are in the tenant's trail before we exit
    return 0


def audit_command(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from services.demo_state import audit_key_file, open_engine, open_registry
    from tenancy.audit import PLATFORM_CHAIN, AuditLog
    from tenancy.events import SecurityEvent

    settings = _settings(args)
    tenant_id = (PLATFORM_CHAIN if args.tenant == PLATFORM_CHAIN
                 else open_registry(settings).get_by_slug(args.tenant).id)
    engine = open_engine(settings)
    log = AuditLog(engine, args.key_file or audit_key_file(settings))
    if settings.uses_sqlite:
        log.create_schema()
    try:
        if args.action == "verify":
            result = log.verify(tenant_id)
            print(result)
            return 0 if result.ok else EXIT_ERROR
        # Exporting the trail is itself audited, committed before any line is written.
        log.emit_durable(SecurityEvent("audit.exported", datetime.now(UTC),
                                       tenant_id=tenant_id, actor="cli"))
        if args.out == "-":
            count = log.export_jsonl(tenant_id, sys.stdout)
        else:
            with open(args.out, "x", encoding="ascii") as out:
                count = log.export_jsonl(tenant_id, out)
        print(f"{args.tenant}: {count} events exported", file=sys.stderr)
        return 0
    finally:
        log.close()
