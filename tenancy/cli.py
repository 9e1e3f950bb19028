"""``tenancy``: run the demo, mint dev tokens; manage tenants, keys, support access,
audit trails, retention and exports.

Errors print one line to stderr and exit non-zero; nothing is half-done.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from tenancy.errors import TenancyError
from tenancy.settings import Settings

EXIT_ERROR = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except (TenancyError, ValueError, OSError, SQLAlchemyError) as exc:
        # One line, whatever the source: driver errors span several.
        detail = getattr(exc, "orig", None) or exc
        print(f"tenancy: error: {' '.join(str(detail).split())}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None),
                             region=getattr(args, "region_override", None))


def _demo(args: argparse.Namespace) -> int:
    from services.demo import run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run(_settings(args), host=args.host, port=args.port, backend_port=args.backend_port,
               console_port=args.console_port)


def _serve(args: argparse.Namespace) -> int:
    from services.demo import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return serve(args.service, _settings(args), host=args.host, port=args.port,
                 parent_pid=args.parent_pid)


def _dev_token(args: argparse.Namespace) -> int:
    from services.demo_state import STAFF_TENANT_ID, open_registry
    from tenancy.context import PrincipalKind
    from tenancy.identity import DevIssuer

    settings = _settings(args)
    issuer = DevIssuer.load_or_create(settings.data_dir)
    roles = [r for r in args.roles.split(",") if r]
    kind = PrincipalKind(args.kind)
    if kind is PrincipalKind.SUPPORT:
        tenant_id = STAFF_TENANT_ID  # staff belong to the platform, not to a customer tenant
    else:
        if not args.tenant:
            raise ValueError("--tenant is required for users")
        tenant_id = open_registry(settings).get_by_slug(args.tenant).id
    extra = {"trusted_device": True} if args.trusted_device else None
    print(
        issuer.mint(
            tenant_id=tenant_id,
            subject=args.sub,
            audience=settings.audience,
            roles=roles,
            scopes=args.scopes.split(),
            mfa=args.mfa,
            ttl=args.ttl,
            kind=kind,
            extra_claims=extra,
        )
    )
    return 0


def _tenants(args: argparse.Namespace) -> int:
    from services.demo_state import open_registry

    registry = open_registry(_settings(args))
    if args.action == "create":
        tenant = registry.provision(args.slug, region=args.region or _settings(args).region,
                                    display_name=args.name, actor="cli")
        print(f"{tenant.slug}\t{tenant.id}\t{tenant.region}\t{tenant.status.value}")
        if args.key_provider or args.key_id:
            from services.demo_state import open_keys
            from tenancy.keys import KeyRef

            # Customer-managed from the start: the tenant's own key, in its own KMS/HSM.
            keys = open_keys(_settings(args))
            provider = args.key_provider or "customer-local"
            ref = (KeyRef(provider, args.key_id) if args.key_id
                   else keys.provider(provider).create_key(tenant_id=tenant.id))
            keys.provision(tenant.id, key=ref)
            print(f"{tenant.slug}\tkey\t{ref.provider}:{ref.key_id}\tcustomer")
    elif args.action == "list":
        for tenant in registry.list():
            print(f"{tenant.slug}\t{tenant.id}\t{tenant.region}\t{tenant.status.value}\t"
                  f"{tenant.display_name}")
    else:
        tenant = registry.get_by_slug(args.slug)
        move = {"suspend": registry.suspend, "activate": registry.activate,
                "offboard": registry.offboard}[args.action]
        moved = move(tenant.id, actor="cli", reason=args.reason)
        print(f"{moved.slug}\t{moved.status.value}")
        if args.action == "offboard":
            from services.demo_state import open_keys

            # Offboarding ends with crypto-shredding: the tenant's data keys go with it.
            keys = open_keys(_settings(args))
            if keys.status(moved.id).kek is not None:
                keys.shred(moved.id)
                print(f"{moved.slug}\tkeys destroyed")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from services.demo_state import open_keys, open_registry
    from tenancy.keys import KeyRef

    settings = _settings(args)
    tenant = open_registry(settings).get_by_slug(args.tenant)
    keys = open_keys(settings)
    if args.action == "status":
        status = keys.status(tenant.id)
        kek, info = status.kek, status.kek_info
        if kek is None:
            print(f"{tenant.slug}: no key")
            return EXIT_ERROR
        enabled = "unknown" if info is None else ("enabled" if info.enabled else "DISABLED")
        versions = "" if info is None else ",".join(info.versions)
        print(f"{tenant.slug}\tkek\t{kek.ref.provider}:{kek.ref.key_id}\t{kek.managed_by}\t"
              f"{kek.state}\t{enabled}\tversions={versions}")
        for dek in status.data_keys:
            print(f"{tenant.slug}\tdek\t{dek.purpose}\tv{dek.version}\t{dek.state}\t"
                  f"kek-version={dek.kek.version}\tmessages>={dek.messages}\t"
                  f"{dek.created_at.isoformat()}")
    elif args.action == "rotate":
        if args.data_key:
            version = keys.rotate_data_key(tenant.id, args.data_key)
            print(f"{tenant.slug}: data key {args.data_key} now at version {version}")
        else:
            count = keys.rotate_kek(tenant.id)
            print(f"{tenant.slug}: KEK rotated; {count} data key(s) re-wrapped, no data touched")
    elif args.action == "use-cmk":
        provider = keys.provider(args.provider)
        ref = (KeyRef(args.provider, args.key_id) if args.key_id
               else provider.create_key(tenant_id=tenant.id))
        count = keys.use_provider(tenant.id, ref)
        print(f"{tenant.slug}: now under customer key {ref.provider}:{ref.key_id}; "
              f"{count} data key(s) re-wrapped")
    elif args.action == "revoke-test":
        status = keys.status(tenant.id)
        if status.kek is None:
            raise ValueError("the tenant has no key")
        provider = keys.provider(status.kek.ref.provider)
        if args.restore:
            provider.enable(status.kek.ref)
            print(f"{tenant.slug}: key re-enabled; reads recover once the key is unwrapped again")
        else:
            provider.disable(status.kek.ref)
            print(f"{tenant.slug}: key disabled (as if the customer revoked it); encrypted "
                  f"reads fail within the data-key cache TTL ({keys.cache.ttl:.0f} s)")
    elif args.action == "shred":
        if args.confirm != tenant.slug:
            raise ValueError(f"shredding is irreversible: pass --confirm {tenant.slug}")
        keys.shred(tenant.id)
        print(f"{tenant.slug}: keys destroyed; its encrypted data can never be read again")
    return 0


def _retention(args: argparse.Namespace) -> int:
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


def _export(args: argparse.Namespace) -> int:
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


def _audit(args: argparse.Namespace) -> int:
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


def _db_audit(args: argparse.Namespace) -> int:
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


def _db_migrate(args: argparse.Namespace) -> int:
    from services.worklogs.migrate import upgrade

    upgrade(args.url, app_role=args.app_role, sql=args.sql)
    return 0


def _support(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from services.demo_state import STAFF_TENANT_ID, open_registry, open_support
    from tenancy.clock import SYSTEM_CLOCK
    from tenancy.context import Assurance, Principal, PrincipalKind
    from tenancy.identity import DEV_ISSUER
    from tenancy.support import Grant

    settings = _settings(args)
    tenant = open_registry(settings).get_by_slug(args.tenant)
    support = open_support(settings)

    def scopes(text: str) -> list[str]:
        return [s for s in text.replace(",", " ").split() if s]

    def hours(value: float | None) -> timedelta | None:
        return None if value is None else timedelta(hours=value)

    def ends(grant: Grant) -> str:
        expires = grant.expires_at()
        return "-" if expires is None else expires.isoformat()

    def admin() -> Principal:
        # The operator acts as the named tenant user, with the roles and MFA it asserts.
        return Principal(issuer=DEV_ISSUER, tenant_id=tenant.id, subject=args.actor,
                         kind=PrincipalKind.USER,
                         roles=frozenset(r for r in args.roles.split(",") if r),
                         assurance=(Assurance.MULTI_FACTOR if getattr(args, "mfa", False)
                                    else Assurance.SINGLE_FACTOR))

    if args.action == "request":
        engineer = Principal(issuer=DEV_ISSUER, tenant_id=STAFF_TENANT_ID, subject=args.actor,
                             kind=PrincipalKind.SUPPORT)
        duration = hours(args.hours)
        assert duration is not None
        grant = support.request(tenant.id, engineer, ticket_id=args.ticket,
                                justification=args.justification, scopes=scopes(args.scopes),
                                duration=duration)
        print(grant.id)
    elif args.action == "approve":
        grant = support.approve(tenant.id, args.grant_id, admin(), duration=hours(args.hours),
                                scopes=scopes(args.scopes) if args.scopes else None,
                                allow_write=args.allow_write)
        print(f"{grant.id}\tapproved\t{','.join(sorted(grant.scopes))}\t{ends(grant)}")
    elif args.action == "deny":
        grant = support.deny(tenant.id, args.grant_id, admin(), reason=args.reason)
        print(f"{grant.id}\tdenied")
    elif args.action == "revoke":
        grant = support.revoke(tenant.id, args.grant_id, admin(), reason=args.reason)
        print(f"{grant.id}\trevoked\t{ends(grant)}")
    elif args.action == "list":
        now = SYSTEM_CLOCK.now()
        support.sweep(tenant.id)  # endings go to the trail and the admins first
        for grant in support.grants(tenant.id):
            shown = grant.scopes or grant.requested_scopes
            print(f"{grant.id}\t{grant.status_at(now)}\t{grant.engineer}\t{grant.ticket_id}\t"
                  f"{','.join(sorted(shown))}\t{ends(grant)}")
    elif args.action == "close-ticket":
        for grant in support.close_ticket(args.ticket, tenant_id=tenant.id):
            print(f"{grant.id}\tticket closed\t{ends(grant)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenancy", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="state directory (default: $TENANCY_DATA_DIR "
                                          "or ./.tenancy-demo)")

    demo = commands.add_parser("demo", help="run the edge and worklogs services on embedded "
                                             "defaults")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="the edge's public port")
    demo.add_argument("--backend-port", type=int, default=8001,
                      help="the worklogs backend's loopback port")
    demo.add_argument("--console-port", type=int, default=8002,
                      help="the tenant admin console's loopback port")
    data_dir(demo)
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser("serve", help="run one demo service (started by `demo`)")
    serve.add_argument("service", choices=["worklogs", "console"])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    data_dir(serve)
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("dev-token", help="print an access token from the dev issuer")
    token.add_argument("--tenant", help="tenant slug (users)")
    token.add_argument("--kind", choices=["user", "support"], default="user",
                       help="support: platform staff, who reach a tenant only under a grant")
    token.add_argument("--trusted-device", action="store_true",
                       help="claim a managed device (support staff need it)")
    token.add_argument("--sub", required=True, help="subject (user id)")
    token.add_argument("--roles", default="member", help="comma-separated roles")
    token.add_argument("--scopes", default="worklogs:read worklogs:write",
                       help="space-separated scopes")
    token.add_argument("--mfa", action=argparse.BooleanOptionalAction, default=False)
    token.add_argument("--ttl", type=int, default=900, help="lifetime in seconds")
    data_dir(token)
    token.set_defaults(handler=_dev_token)

    tenants = commands.add_parser("tenants", help="manage the tenant registry")
    actions = tenants.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="provision a tenant")
    create.add_argument("slug")
    create.add_argument("--region", help="home region (default: $TENANCY_REGION)")
    create.add_argument("--name", help="display name")
    create.add_argument("--key-provider", help="customer-managed key: the provider holding it "
                                               "(default platform-managed keys)")
    create.add_argument("--key-id", help="customer-managed key: its id in that provider")
    data_dir(create)
    listing = actions.add_parser("list", help="list tenants")
    data_dir(listing)
    for name in ("suspend", "activate", "offboard"):
        move = actions.add_parser(name, help=f"{name} a tenant")
        move.add_argument("slug")
        move.add_argument("--reason", required=True)
        data_dir(move)
    tenants.set_defaults(handler=_tenants)

    keys = commands.add_parser("keys", help="a tenant's encryption keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    for name, text in (("status", "show the tenant's KEK and data keys"),
                       ("rotate", "rotate the KEK (re-wraps data keys) or a data key"),
                       ("use-cmk", "move the tenant under a customer-managed key"),
                       ("revoke-test", "disable the tenant's key, as its owner would"),
                       ("shred", "destroy the tenant's keys (irreversible)")):
        action = key_actions.add_parser(name, help=text)
        action.add_argument("--tenant", required=True, help="tenant slug")
        data_dir(action)
        if name == "rotate":
            action.add_argument("--data-key", metavar="PURPOSE",
                                help="rotate this purpose's data key instead of the KEK")
        if name == "use-cmk":
            action.add_argument("--provider", default="customer-local",
                                help="configured provider holding the customer's key")
            action.add_argument("--key-id", help="the customer's key id (default: create one)")
        if name == "revoke-test":
            action.add_argument("--restore", action="store_true", help="re-enable the key")
        if name == "shred":
            action.add_argument("--confirm", required=True, metavar="SLUG",
                                help="repeat the tenant slug")
    keys.set_defaults(handler=_keys)

    retention = commands.add_parser("retention", help="retention rules and erasure")
    retention_actions = retention.add_subparsers(dest="action", required=True)
    run_retention = retention_actions.add_parser(
        "run", help="delete what is due (exports 12 days after export, mappings 14 days "
                    "after first notification); idempotent, resumable")
    run_retention.add_argument("--batch-size", type=int, default=500,
                               help="rows per transaction")
    run_retention.add_argument("--verbose", action="store_true", help="also list zero counts")
    data_dir(run_retention)
    erase = retention_actions.add_parser(
        "erase", help="a tenant's right to erasure: delete its personal data, shred its keys")
    erase.add_argument("--tenant", required=True, help="tenant slug")
    erase.add_argument("--confirm", required=True, metavar="SLUG",
                       help="repeat the tenant slug")
    erase.add_argument("--requested-by", help="who asked (recorded in the audit log)")
    data_dir(erase)
    retention.set_defaults(handler=_retention)

    export = commands.add_parser("export", help="a tenant's worklogs export and its link")
    export_actions = export.add_subparsers(dest="action", required=True)
    create_export = export_actions.add_parser("create",
                                              help="snapshot the worklogs; print the link")
    create_export.add_argument("--format", choices=("json", "csv"), default="json")
    download = export_actions.add_parser("download", help="fetch an export by its link token")
    download.add_argument("--token", required=True, help="the token `export create` printed")
    download.add_argument("--out",
                          help="file to write (default: export-<id>.<format>; - = stdout)")
    for action in (create_export, download):
        action.add_argument("--tenant", required=True, help="tenant slug")
        action.add_argument("--as", dest="as_subject", default="cli",
                            help="subject recorded as the actor")
        data_dir(action)
    export.set_defaults(handler=_export)

    audit_cmd = commands.add_parser("audit", help="verify or export a tenant's audit trail")
    audit_actions = audit_cmd.add_subparsers(dest="action", required=True)
    for name, text in (("verify", "recompute the hash chain and check its signed head"),
                       ("export", "write the trail as JSON lines")):
        audit_action = audit_actions.add_parser(name, help=text)
        audit_action.add_argument("--tenant", required=True, metavar="SLUG",
                                  help="tenant slug, or 'platform' for tenant-less events")
        audit_action.add_argument("--key-file", help="0600 file holding the hex audit key "
                                                     "(default: the demo's, or "
                                                     "$TENANCY_AUDIT_KEY)")
        data_dir(audit_action)
        if name == "export":
            audit_action.add_argument("--out", default="-",
                                      help="file to create (default: stdout)")
    audit_cmd.set_defaults(handler=_audit)

    db = commands.add_parser("db", help="check a live PostgreSQL database")
    db_actions = db.add_subparsers(dest="db_action", required=True)
    db_audit = db_actions.add_parser("audit", help="audit RLS, roles, views and functions")
    db_audit.add_argument("--url", required=True,
                          help="SQLAlchemy URL; connect as the application role")
    db_audit.add_argument("--app-role", help="role to judge (default: the connecting role)")
    db_audit.set_defaults(handler=_db_audit)
    db_migrate = db_actions.add_parser("migrate", help="apply the worklogs migrations")
    db_migrate.add_argument("--url", required=True, help="the OWNER's SQLAlchemy URL")
    db_migrate.add_argument("--app-role", required=True,
                            help="application role to grant DML (NOSUPERUSER NOBYPASSRLS)")
    db_migrate.add_argument("--sql", action="store_true",
                            help="print the SQL instead of running it")
    db_migrate.set_defaults(handler=_db_migrate)
    support = commands.add_parser(
        "support", help="support access grants (operator tool: acts as the named people)",
        description="Operator tool for support-access grants. It acts AS the people named "
                    "with --as (and trusts --roles and --mfa as given): the engineer "
                    "requesting, the tenant's admin deciding. It authenticates nobody; "
                    "in production these decisions come from the people themselves, "
                    "through their own authenticated sessions.")
    support_actions = support.add_subparsers(dest="action", required=True)
    as_help = "subject of the person this command acts as"

    def hours(text: str) -> float:
        value = float(text)
        if not 0 < value < float("inf"):  # also refuses NaN
            raise argparse.ArgumentTypeError("a positive number of hours")
        return value

    req = support_actions.add_parser("request", help="as a support engineer, request access")
    req.add_argument("--tenant", required=True, help="tenant slug")
    req.add_argument("--as", dest="actor", required=True, metavar="SUBJECT",
                     help=as_help + " (a support engineer)")
    req.add_argument("--ticket", required=True, help="the ticket that needs the access")
    req.add_argument("--justification", required=True)
    req.add_argument("--scopes", required=True, help="space- or comma-separated scopes")
    req.add_argument("--hours", type=hours, required=True, help="requested duration")
    for name, text in (("approve", "as the tenant's admin, approve a pending request"),
                       ("deny", "as the tenant's admin, deny a pending request"),
                       ("revoke", "as the tenant's admin, end an active grant now")):
        decide = support_actions.add_parser(name, help=text)
        decide.add_argument("grant_id", metavar="GRANT_ID")
        decide.add_argument("--tenant", required=True, help="tenant slug")
        decide.add_argument("--as", dest="actor", required=True, metavar="SUBJECT",
                            help=as_help + " (a user of the tenant)")
        decide.add_argument("--roles", default="", help="comma-separated roles it holds")
        if name != "revoke":
            decide.add_argument("--mfa", action="store_true",
                                help="it authenticated with MFA (required to decide)")
        if name == "approve":
            decide.add_argument("--hours", type=hours,
                                help="approved duration (default: as requested)")
            decide.add_argument("--scopes", help="narrow to these scopes (default: as "
                                                 "requested, minus writes)")
            decide.add_argument("--allow-write", action="store_true",
                                help="consent to write scopes too")
        else:
            decide.add_argument("--reason", required=True)
        data_dir(decide)
    grant_list = support_actions.add_parser(
        "list", help="the tenant's grants: id, status, engineer, ticket, scopes, ends")
    grant_list.add_argument("--tenant", required=True, help="tenant slug")
    close = support_actions.add_parser(
        "close-ticket", help="the ticket closed: its grants end 24 h from now at the latest")
    close.add_argument("ticket", metavar="TICKET")
    close.add_argument("--tenant", required=True, help="tenant slug")
    for action in (req, grant_list, close):
        data_dir(action)
    support.set_defaults(handler=_support)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
