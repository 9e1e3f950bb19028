"""Demonstrates plugging commands into the ``tenancy`` command line (entry point group
``tenancy.cli``): the examples' ``demo``, ``serve``, ``dev-token`` and ``db migrate``.

The library's commands (tenants, keys, support, audit, ...) work on any deployment and
never import this package; these belong to the examples and exist wherever they are
installed (``make demo`` and ``make test`` install them).
"""

from __future__ import annotations

import argparse
import logging

from tenancy.cli.plugins import CommandLine


def register(cli: CommandLine) -> None:
    """Add the examples' commands to ``cli``."""
    demo = cli.command("demo", help="run the edge and worklogs services on embedded defaults")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="the edge's public port")
    demo.add_argument(
        "--backend-port", type=int, default=8001, help="the worklogs backend's loopback port"
    )
    demo.add_argument(
        "--console-port", type=int, default=8002, help="the tenant admin console's loopback port"
    )
    cli.data_dir(demo)
    demo.set_defaults(handler=demo_command)

    serve = cli.command("serve", help="run one demo service (started by `demo`)")
    serve.add_argument("service", choices=["worklogs", "console"])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    cli.data_dir(serve)
    serve.set_defaults(handler=serve_command)

    token = cli.command("dev-token", help="print an access token from the dev issuer")
    token.add_argument("--tenant", help="tenant slug (users)")
    token.add_argument(
        "--kind",
        choices=["user", "support"],
        default="user",
        help="support: platform staff, who reach a tenant only under a grant",
    )
    token.add_argument(
        "--trusted-device",
        action="store_true",
        help="claim a managed device (support staff need it)",
    )
    token.add_argument("--sub", required=True, help="subject (user id)")
    token.add_argument("--roles", default="member", help="comma-separated roles")
    token.add_argument(
        "--scopes", default="worklogs:read worklogs:write", help="space-separated scopes"
    )
    token.add_argument("--mfa", action=argparse.BooleanOptionalAction, default=False)
    token.add_argument("--ttl", type=int, default=900, help="lifetime in seconds")
    cli.data_dir(token)
    token.set_defaults(handler=dev_token_command)

    migrate = cli.command("migrate", group="db", help="apply the worklogs migrations")
    migrate.add_argument("--url", required=True, help="the OWNER's SQLAlchemy URL")
    migrate.add_argument(
        "--app-role", required=True, help="application role to grant DML (NOSUPERUSER NOBYPASSRLS)"
    )
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    migrate.set_defaults(handler=db_migrate_command)


def demo_command(args: argparse.Namespace) -> int:
    from tenancy_examples.demo import run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run(
        CommandLine.settings(args),
        host=args.host,
        port=args.port,
        backend_port=args.backend_port,
        console_port=args.console_port,
    )


def serve_command(args: argparse.Namespace) -> int:
    from tenancy_examples.demo import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return serve(
        args.service,
        CommandLine.settings(args),
        host=args.host,
        port=args.port,
        parent_pid=args.parent_pid,
    )


def dev_token_command(args: argparse.Namespace) -> int:
    from tenancy.context import PrincipalKind
    from tenancy.deployment import STAFF_TENANT_ID, open_registry
    from tenancy.identity import DevIssuer

    settings = CommandLine.settings(args)
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


def db_migrate_command(args: argparse.Namespace) -> int:
    from tenancy_examples.worklogs.migrate import upgrade

    upgrade(args.url, app_role=args.app_role, sql=args.sql)
    return 0
