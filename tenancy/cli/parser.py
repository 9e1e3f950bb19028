"""The command line's shape: every command, its arguments and its handler."""

from __future__ import annotations

import argparse

from tenancy.cli.authz import add_roles_parser, authz_command
from tenancy.cli.database import db_audit_command, db_matrix_command
from tenancy.cli.evidence import (
    audit_command,
    evidence_command,
    export_command,
    retention_command,
)
from tenancy.cli.keys import keys_command
from tenancy.cli.plugins import CommandLine, register_plugins
from tenancy.cli.probe import probe_command
from tenancy.cli.support import support_command
from tenancy.cli.tenants import tenants_command

DESCRIPTION = (
    "tenancy: multi-tenant isolation: tenants, keys, support access, audit, retention, "
    "exports, evidence (installed plugins add their own commands)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``tenancy`` argument parser: the library's commands, then installed plugins'."""
    parser = argparse.ArgumentParser(prog="tenancy", description=DESCRIPTION)
    commands = parser.add_subparsers(title="commands")

    data_dir = CommandLine.data_dir

    tenants = commands.add_parser("tenants", help="manage the tenant registry")
    actions = tenants.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="provision a tenant")
    create.add_argument("slug")
    create.add_argument("--region", help="home region (default: $TENANCY_REGION)")
    create.add_argument("--name", help="display name")
    create.add_argument(
        "--key-provider",
        help="customer-managed key: the provider holding it (default platform-managed keys)",
    )
    create.add_argument("--key-id", help="customer-managed key: its id in that provider")
    create.add_argument(
        "--no-key",
        action="store_true",
        help="provision no key now (`tenancy keys provision` later)",
    )
    data_dir(create)
    listing = actions.add_parser("list", help="list tenants")
    data_dir(listing)
    for name in ("suspend", "activate", "offboard"):
        move = actions.add_parser(name, help=f"{name} a tenant")
        move.add_argument("slug")
        move.add_argument("--reason", required=True)
        data_dir(move)
    tenants.set_defaults(handler=tenants_command)

    keys = commands.add_parser("keys", help="a tenant's encryption keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    for name, text in (
        ("status", "show the tenant's KEK and data keys"),
        ("provision", "give the tenant its keys (platform, or --key-provider)"),
        ("rotate", "rotate the KEK (re-wraps data keys) or a data key"),
        ("destroy-retired", "destroy KEK versions whose grace period is over"),
        ("ttl", "set how long the tenant's data keys may be cached"),
        ("announce", "tell every process again that the tenant's keys changed"),
        ("use-cmk", "move the tenant under a customer-managed key"),
        ("revoke-test", "disable the tenant's key, as its owner would"),
        ("shred", "destroy the tenant's keys (irreversible)"),
    ):
        action = key_actions.add_parser(name, help=text)
        action.add_argument("--tenant", required=True, help="tenant slug")
        data_dir(action)
        if name == "provision":
            action.add_argument(
                "--key-provider", help="customer-managed key: the provider holding it"
            )
            action.add_argument(
                "--key-id", help="customer-managed key: its id there (default: create one)"
            )
            action.add_argument(
                "--cache-ttl",
                type=float,
                metavar="SECONDS",
                help="how long its data keys may be cached",
            )
        if name == "ttl":
            action.add_argument(
                "--seconds",
                type=float,
                metavar="SECONDS",
                help="the tenant's TTL (omit for the default)",
            )
        if name == "rotate":
            action.add_argument(
                "--data-key",
                metavar="PURPOSE",
                help="rotate this purpose's data key instead of the KEK",
            )
        if name == "use-cmk":
            action.add_argument(
                "--provider",
                default="customer-local",
                help="configured provider holding the customer's key",
            )
            action.add_argument("--key-id", help="the customer's key id (default: create one)")
        if name == "revoke-test":
            action.add_argument("--restore", action="store_true", help="re-enable the key")
        if name == "shred":
            action.add_argument(
                "--confirm", required=True, metavar="SLUG", help="repeat the tenant slug"
            )
    keys.set_defaults(handler=keys_command)

    retention = commands.add_parser("retention", help="retention rules and erasure")
    retention_actions = retention.add_subparsers(dest="action", required=True)
    run_retention = retention_actions.add_parser(
        "run",
        help="delete what is due (exports 12 days after export, mappings 14 days "
        "after first notification); idempotent, resumable",
    )
    run_retention.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
    run_retention.add_argument("--verbose", action="store_true", help="also list zero counts")
    data_dir(run_retention)
    erase = retention_actions.add_parser(
        "erase", help="a tenant's right to erasure: delete its personal data, shred its keys"
    )
    erase.add_argument("--tenant", required=True, help="tenant slug")
    erase.add_argument("--confirm", required=True, metavar="SLUG", help="repeat the tenant slug")
    erase.add_argument("--requested-by", help="who asked (recorded in the audit log)")
    erase.add_argument(
        "--table",
        action="append",
        metavar="NAME",
        help="also empty this tenant-owned table (repeatable; besides the library's and "
        "those installed plugins declare)",
    )
    data_dir(erase)
    retention.set_defaults(handler=retention_command)

    export = commands.add_parser("export", help="a tenant's data export and its link")
    export_actions = export.add_subparsers(dest="action", required=True)
    create_export = export_actions.add_parser(
        "create", help="snapshot the tenant's rows of an export source; print the link"
    )
    create_export.add_argument("--format", choices=("json", "csv"), default="json")
    create_export.add_argument(
        "--source",
        metavar="NAME",
        help="installed export source (entry point group tenancy.export_sources; "
        "default: the only one installed)",
    )
    download = export_actions.add_parser("download", help="fetch an export by its link token")
    download.add_argument("--token", required=True, help="the token `export create` printed")
    download.add_argument("--out", help="file to write (default: export-<id>.<format>; - = stdout)")
    for action in (create_export, download):
        action.add_argument("--tenant", required=True, help="tenant slug")
        action.add_argument(
            "--as", dest="as_subject", default="cli", help="subject recorded as the actor"
        )
        data_dir(action)
    export.set_defaults(handler=export_command)

    audit_cmd = commands.add_parser("audit", help="verify or export a tenant's audit trail")
    audit_actions = audit_cmd.add_subparsers(dest="action", required=True)
    for name, text in (
        ("verify", "recompute the hash chain and check its signed head"),
        ("export", "write the trail as JSON lines"),
    ):
        audit_action = audit_actions.add_parser(name, help=text)
        audit_action.add_argument(
            "--tenant",
            required=True,
            metavar="SLUG",
            help="tenant slug, or 'platform' for tenant-less events",
        )
        audit_action.add_argument(
            "--key-file",
            help="0600 file holding the hex audit key "
            "(default: $TENANCY_AUDIT_KEY, else <data-dir>/keys/audit.key)",
        )
        data_dir(audit_action)
        if name == "export":
            audit_action.add_argument("--out", default="-", help="file to create (default: stdout)")
    audit_cmd.set_defaults(handler=audit_command)

    probe = commands.add_parser(
        "probe",
        help="attack a running service as every tenant's identities; exit 1 on a leak",
        description="Seeds data as every identity, checks each reaches its own (positive "
        "controls), then replays every route as other tenants' identities, with "
        "tampered credentials and as ungranted support staff. Exit codes: 0 no "
        "leak, 1 a leak, 2 a bad configuration, 3 void (a positive control "
        "failed), 4 errors but no leak.",
    )
    probe.add_argument("--config", required=True, help="probe.toml")
    probe.add_argument("--target", help="base URL (default: the config's target)")
    probe.add_argument("--out", help="write the JSON report here (- for stdout)")
    probe.add_argument("--verbose", action="store_true", help="list every cell")
    probe.set_defaults(handler=probe_command)

    authz = commands.add_parser("authz", help="policy bundles for OPA, tenants' role bindings")
    authz_actions = authz.add_subparsers(dest="authz_action", required=True)
    bundle = authz_actions.add_parser("bundle", help="build or inspect an OPA bundle archive")
    bundle_actions = bundle.add_subparsers(dest="bundle_action", required=True)
    build = bundle_actions.add_parser(
        "build",
        help="write the policies and their data as an OPA bundle (.tar.gz)",
        description="The shipped policies (or --policies, or $TENANCY_POLICY_BUNDLE) with "
        "each --data file, then $TENANCY_POLICY_DATA, laid over their data.",
    )
    build.add_argument("--out", required=True, help="the archive to write (replaced atomically)")
    build.add_argument(
        "--data", action="append", metavar="FILE", help="policy data to lay over (repeatable)"
    )
    build.add_argument("--policies", metavar="DIR", help="policy directory (default: shipped)")
    build.add_argument("--revision", help="the manifest revision (default: a content digest)")
    build.add_argument(
        "--signing-key", metavar="PEM", help="private key (RSA or EC) to sign the bundle with"
    )
    build.add_argument("--key-id", default="tenancy", help="key id OPA verifies with")
    build.add_argument("--scope", help="signature scope OPA expects (optional)")
    data_dir(build)
    inspect = bundle_actions.add_parser("inspect", help="read an archive back (and verify it)")
    inspect.add_argument("archive", metavar="FILE")
    inspect.add_argument(
        "--verification-key", metavar="PEM", help="public key: require a signature"
    )
    inspect.add_argument("--key-id", help="the key id the signature must name")
    inspect.add_argument("--scope", help="the signature scope expected")
    add_roles_parser(authz_actions, data_dir)
    authz.set_defaults(handler=authz_command)

    db = commands.add_parser("db", help="check a live PostgreSQL database")
    db_actions = db.add_subparsers(dest="db_action", required=True)
    db_audit = db_actions.add_parser("audit", help="audit RLS, roles, views and functions")
    db_audit.add_argument(
        "--url", required=True, help="SQLAlchemy URL; connect as the application role"
    )
    db_audit.add_argument("--app-role", help="role to judge (default: the connecting role)")
    db_audit.add_argument(
        "--citus",
        action="store_true",
        help="also warn about keys that keep tables from being distributed by tenant_id",
    )
    db_audit.set_defaults(handler=db_audit_command)
    db_matrix = db_actions.add_parser(
        "matrix",
        help="prove RLS cell by cell: each tenant's reads and writes against "
        "the others' rows (always rolled back)",
    )
    db_matrix.add_argument(
        "--url", required=True, help="SQLAlchemy URL; connect as the application role"
    )
    db_matrix.add_argument(
        "--tenant",
        action="append",
        metavar="ID",
        help="tenant id to test (repeatable; default: the registry's)",
    )
    db_matrix.add_argument(
        "--app-role", help="role the auditor judges (default: the connecting role)"
    )
    db_matrix.add_argument(
        "--json", metavar="PATH", help="also write the matrix as JSON (- = stdout)"
    )
    db_matrix.add_argument("--quiet", action="store_true", help="print the summary only")
    db_matrix.set_defaults(handler=db_matrix_command)
    evidence = commands.add_parser("evidence", help="the isolation evidence pack")
    evidence_actions = evidence.add_subparsers(dest="action", required=True)
    pack = evidence_actions.add_parser(
        "pack",
        help="write evidence.json and evidence.html: probe, database matrix, audit "
        "chains and policy tests, judged",
        description="Exit codes: 0 PASS, 1 FAIL, 2 a bad input, 3 INCOMPLETE (an input "
        "is missing or a policy test could not run).",
    )
    pack.add_argument("--out", required=True, metavar="DIR", help="directory to write to")
    probe_input = pack.add_mutually_exclusive_group()
    probe_input.add_argument("--probe", metavar="PATH", help="`tenancy probe --out` JSON")
    probe_input.add_argument(
        "--probe-config",
        metavar="TOML",
        help="run the probe now with this probe.toml (see --target)",
    )
    pack.add_argument("--target", help="with --probe-config: the base URL (default: the config's)")
    db_input = pack.add_mutually_exclusive_group()
    db_input.add_argument("--db-matrix", metavar="PATH", help="`tenancy db matrix --json` JSON")
    db_input.add_argument(
        "--db-url", metavar="URL", help="run the database matrix now, connected as the app role"
    )
    pack.add_argument(
        "--audit-key-file",
        help="0600 file holding the hex audit key "
        "(default: $TENANCY_AUDIT_KEY, else <data-dir>/keys/audit.key)",
    )
    data_dir(pack)
    pack.set_defaults(handler=evidence_command)

    support = commands.add_parser(
        "support",
        help="support access grants (operator tool: acts as the named people)",
        description="Operator tool for support-access grants. It acts AS the people named "
        "with --as (and trusts --roles and --mfa as given): the engineer "
        "requesting, the tenant's admin deciding. It authenticates nobody; "
        "in production these decisions come from the people themselves, "
        "through their own authenticated sessions.",
    )
    support_actions = support.add_subparsers(dest="action", required=True)
    as_help = "subject of the person this command acts as"

    def hours(text: str) -> float:
        value = float(text)
        if not 0 < value < float("inf"):  # also refuses NaN
            raise argparse.ArgumentTypeError("a positive number of hours")
        return value

    req = support_actions.add_parser("request", help="as a support engineer, request access")
    req.add_argument("--tenant", required=True, help="tenant slug")
    req.add_argument(
        "--as",
        dest="actor",
        required=True,
        metavar="SUBJECT",
        help=as_help + " (a support engineer)",
    )
    req.add_argument("--ticket", required=True, help="the ticket that needs the access")
    req.add_argument("--justification", required=True)
    req.add_argument("--scopes", required=True, help="space- or comma-separated scopes")
    req.add_argument("--hours", type=hours, required=True, help="requested duration")
    for name, text in (
        ("approve", "as the tenant's admin, approve a pending request"),
        ("deny", "as the tenant's admin, deny a pending request"),
        ("revoke", "as the tenant's admin, end an active grant now"),
    ):
        decide = support_actions.add_parser(name, help=text)
        decide.add_argument("grant_id", metavar="GRANT_ID")
        decide.add_argument("--tenant", required=True, help="tenant slug")
        decide.add_argument(
            "--as",
            dest="actor",
            required=True,
            metavar="SUBJECT",
            help=as_help + " (a user of the tenant)",
        )
        decide.add_argument("--roles", default="", help="comma-separated roles it holds")
        if name != "revoke":
            decide.add_argument(
                "--mfa", action="store_true", help="it authenticated with MFA (required to decide)"
            )
        if name == "approve":
            decide.add_argument(
                "--hours", type=hours, help="approved duration (default: as requested)"
            )
            decide.add_argument(
                "--scopes", help="narrow to these scopes (default: as requested, minus writes)"
            )
            decide.add_argument(
                "--allow-write", action="store_true", help="consent to write scopes too"
            )
        else:
            decide.add_argument("--reason", required=True)
        data_dir(decide)
    grant_list = support_actions.add_parser(
        "list", help="the tenant's grants: id, status, engineer, ticket, scopes, ends"
    )
    grant_list.add_argument("--tenant", required=True, help="tenant slug")
    close = support_actions.add_parser(
        "close-ticket", help="the ticket closed: its grants end 24 h from now at the latest"
    )
    close.add_argument("ticket", metavar="TICKET")
    close.add_argument("--tenant", required=True, help="tenant slug")
    for action in (req, grant_list, close):
        data_dir(action)
    support.set_defaults(handler=support_command)
    register_plugins(CommandLine(commands, groups={"db": db_actions}))
    return parser
