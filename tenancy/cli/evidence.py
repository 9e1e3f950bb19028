"""``tenancy retention``, ``export``, ``audit`` and ``evidence``: the evidence around the
data."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from tenancy.cli.common import EXIT_ERROR, EXIT_USAGE, print_error
from tenancy.cli.common import settings_of as _settings

if TYPE_CHECKING:
    from tenancy.settings import Settings
    from tenancy.testing.evidence import ChainResult

EXIT_INCOMPLETE = 3  # evidence pack: nothing failed, but some evidence is missing


def retention_command(args: argparse.Namespace) -> int:
    """``tenancy retention run|erase``: delete what is due, or a tenant's personal data."""
    from sqlalchemy import MetaData, Table

    from tenancy.cli.plugins import erasure_tables
    from tenancy.deployment import open_audit, open_engine, open_keys, open_registry
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
        job = RetentionJob(
            engine, batch_size=args.batch_size, tenants=lambda: list(slugs), events=audit
        )
        report = job.run()
        for (tenant_id, data_class), deleted in sorted(report.counts.items()):
            if deleted or args.verbose:
                print(f"{slugs.get(tenant_id, tenant_id)}\t{data_class}\tdeleted={deleted}")
        print(f"retention: {report.total} row(s) deleted; a rerun deletes nothing more")
    elif args.action == "erase":
        tenant = registry.get_by_slug(args.tenant)
        if args.confirm != tenant.slug:
            raise ValueError(f"erasure is irreversible: pass --confirm {tenant.slug}")
        # The library's own tables, those installed plugins declare, and those named here.
        tables = [*DEFAULT_ERASURE_TABLES, *erasure_tables()]
        for name in args.table or ():
            if name not in {t.name for t in tables}:
                tables.append(Table(name, MetaData(), autoload_with=engine))
        erased = erase_tenant_personal_data(
            tenant.id,
            engine=engine,
            keys=open_keys(settings, engine=engine),
            tables=tables,
            requested_by=args.requested_by,
            events=audit,
        )
        for table, deleted in erased.deleted.items():
            print(f"{tenant.slug}\t{table}\tdeleted={deleted}")
        print(
            f"{tenant.slug}: personal data erased; keys {erased.keys}. Offboard the "
            f"tenant next: `tenancy tenants offboard {tenant.slug} --reason erasure`"
        )
    audit.close()
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``tenancy export create|download``: signed, expiring exports of a tenant's data."""
    from pathlib import Path

    from tenancy.cli.plugins import export_source
    from tenancy.context import Principal, PrincipalKind, TenantContext, bind
    from tenancy.deployment import open_audit, open_engine, open_exports, open_keys, open_registry
    from tenancy.exports import ExportSource

    settings = _settings(args)
    tenant = open_registry(settings).get_by_slug(args.tenant)
    engine = open_engine(settings)
    keys = open_keys(settings, engine=engine)
    if args.action == "create":
        source = export_source(settings, name=args.source, engine=engine, keys=keys)
    else:
        # A download reads the sealed snapshot only: no source is asked for rows.
        source = ExportSource(rows=tuple, fields=("id",))
    audit = open_audit(settings, engine=engine)
    exports = open_exports(settings, source=source, engine=engine, keys=keys, events=audit)
    ctx = TenantContext(
        tenant.id,
        tenant.slug,
        settings.region,
        Principal("tenancy-cli", tenant.id, args.as_subject, kind=PrincipalKind.SERVICE),
        "cli",
    )
    with bind(ctx):
        if args.action == "create":
            link = exports.create(args.format)
            print(
                f"{tenant.slug}\t{link.export_id}\t{link.format}\trows={link.rows}\t"
                f"expires={link.expires_at.isoformat()}"
            )
            print(link.token)
        else:
            got = exports.download(args.token)
            if args.out == "-":
                sys.stdout.buffer.write(got.content)
            else:
                Path(args.out or got.filename).write_bytes(got.content)
                print(
                    f"{tenant.slug}: wrote {args.out or got.filename} ({len(got.content)} bytes)",
                    file=sys.stderr,
                )
    audit.close()  # the export's events are in the tenant's trail before we exit
    return 0


def audit_command(args: argparse.Namespace) -> int:
    """``tenancy audit verify|show``: check or print a tenant's hash-chained audit log."""
    from datetime import UTC, datetime

    from tenancy.audit import PLATFORM_CHAIN, AuditLog
    from tenancy.deployment import audit_key_file, open_engine, open_registry
    from tenancy.events import SecurityEvent

    settings = _settings(args)
    tenant_id = (
        PLATFORM_CHAIN
        if args.tenant == PLATFORM_CHAIN
        else open_registry(settings).get_by_slug(args.tenant).id
    )
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
        log.emit_durable(
            SecurityEvent("audit.exported", datetime.now(UTC), tenant_id=tenant_id, actor="cli")
        )
        if args.out == "-":
            count = log.export_jsonl(tenant_id, sys.stdout)
        else:
            with open(args.out, "x", encoding="ascii") as out:
                count = log.export_jsonl(tenant_id, out)
        print(f"{args.tenant}: {count} events exported", file=sys.stderr)
        return 0
    finally:
        log.close()


def evidence_command(args: argparse.Namespace) -> int:
    """``tenancy evidence pack``: exit 0 PASS, 1 FAIL, 3 INCOMPLETE, 2 a bad input."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import SQLAlchemyError

    from tenancy.authz import PolicyBundle
    from tenancy.authz.policytests import run_policy_tests
    from tenancy.errors import ConfigurationError
    from tenancy.testing.evidence import (
        DB_MATRIX_KIND,
        PROBE_KIND,
        EvidenceInputError,
        Verdict,
        build_evidence,
        collect_versions,
        load_input,
        write_pack,
    )
    from tenancy.testing.report import ensure_renderer

    try:
        ensure_renderer()  # a pack that cannot be written is refused before any work
        probe = load_input(args.probe, kind=PROBE_KIND) if args.probe else None
        db = load_input(args.db_matrix, kind=DB_MATRIX_KIND) if args.db_matrix else None
        if args.probe_config:
            probe = _run_probe(args.probe_config, args.target)
        if args.db_url:
            db = _run_db_matrix(args.db_url)
        audit, audit_missing = _audit_chains(_settings(args), args.audit_key_file)
    except (EvidenceInputError, ConfigurationError, OSError, SQLAlchemyError) as exc:
        # Bad inputs named on the command line: one line, exit 2, nothing written.
        print_error(exc, hide=[args.db_url])
        return EXIT_USAGE
    not_provided = {
        "probe": "no --probe or --probe-config given",
        "db_matrix": "no --db-matrix or --db-url given",
        "audit": audit_missing,
    }
    evidence = build_evidence(
        probe=probe,
        db_matrix=db,
        audit=audit,
        policy_tests=run_policy_tests(),
        versions=collect_versions(
            bundle=PolicyBundle.from_directory(data=_settings(args).policy_data), db_matrix=db
        ),
        now=datetime.now(UTC),
        not_provided=not_provided,
    )
    json_path, html_path = write_pack(evidence, args.out)
    print(f"verdict: {evidence['verdict']}")
    for reason in evidence["reasons"]:
        print(f"  - {reason}")
    print(f"wrote {json_path}\nwrote {html_path}")
    return {Verdict.PASS: 0, Verdict.FAIL: EXIT_ERROR, Verdict.INCOMPLETE: EXIT_INCOMPLETE}[
        Verdict(evidence["verdict"])
    ]


def _run_probe(config: str, target: str | None) -> dict[str, Any]:
    """Run the probe here and now (one command for the whole pack)."""
    import asyncio

    from tenancy.testing.evidence import PROBE_KIND, validate_input
    from tenancy.testing.probe import load_config, run_probe

    report = asyncio.run(run_probe(load_config(config), target=target))
    print(f"probe: {report.summary}" + (" (void)" if report.void else ""), file=sys.stderr)
    return validate_input(report.to_json(), kind=PROBE_KIND)


def _run_db_matrix(url: str) -> dict[str, Any]:
    from tenancy.testing.dbmatrix import access_matrix_for_url
    from tenancy.testing.evidence import DB_MATRIX_KIND, validate_input

    matrix = access_matrix_for_url(url)
    print(f"db matrix: {matrix.summary}", file=sys.stderr)
    return validate_input(matrix.to_json(), kind=DB_MATRIX_KIND)


def _audit_chains(
    settings: Settings,
    key_file: str | None,
) -> tuple[list[ChainResult] | None, str]:
    """Every registered tenant's chain and the platform chain, verified; or ``None`` and
    why not. Read-only: no database, schema or key is created on the way."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from tenancy.audit import ENV_VAR, PLATFORM_CHAIN, AuditLog, load_audit_key
    from tenancy.tenants import TenantRegistry
    from tenancy.testing.evidence import verify_chains

    if key_file is not None:
        key = load_audit_key(key_file)  # a bad key file given by name is a bad input
    elif os.environ.get(ENV_VAR):
        key = load_audit_key(None)
    elif (settings.data_dir / "keys" / "audit.key").is_file():
        key = load_audit_key(settings.data_dir / "keys" / "audit.key")
    else:
        return None, (
            f"no audit key: none in {settings.data_dir / 'keys'}, no ${ENV_VAR}, "
            "no --audit-key-file"
        )
    url = make_url(settings.database_url)
    if settings.uses_sqlite and not (url.database and os.path.isfile(url.database)):
        return None, f"no database at {url.database}"
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if not {"tenancy_tenants", "tenancy_audit_events", "tenancy_audit_heads"} <= tables:
            return None, f"no tenant registry or audit tables in {url.render_as_string()}"
        chains = [(t.slug, t.id) for t in TenantRegistry(engine).list()]
        log = AuditLog(engine, key)
        try:
            return verify_chains(log, [*chains, (PLATFORM_CHAIN, PLATFORM_CHAIN)]), ""
        finally:
            log.close()
    except SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        return None, f"database unreachable: {' '.join(str(detail).split())}"
    finally:
        engine.dispose()
