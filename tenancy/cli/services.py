"""Commands that run the demo services, mint dev tokens and manage tenants."""

from __future__ import annotations

import argparse
import logging

from tenancy.cli.common import settings_of as _settings


def demo_command(args: argparse.Namespace) -> int:
    from services.demo import run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run(
        _settings(args),
        host=args.host,
        port=args.port,
        backend_port=args.backend_port,
        console_port=args.console_port,
    )


def serve_command(args: argparse.Namespace) -> int:
    from services.demo import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return serve(
        args.service, _settings(args), host=args.host, port=args.port, parent_pid=args.parent_pid
    )


def dev_token_command(args: argparse.Namespace) -> int:
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


def tenants_command(args: argparse.Namespace) -> int:
    from services.demo_state import open_registry

    registry = open_registry(_settings(args))
    if args.action == "create" and args.no_key and (args.key_provider or args.key_id):
        raise ValueError("--no-key and a customer key exclude each other")
    if args.action == "create":
        tenant = registry.provision(
            args.slug,
            region=args.region or _settings(args).region,
            display_name=args.name,
            actor="cli",
        )
        print(f"{tenant.slug}\t{tenant.id}\t{tenant.region}\t{tenant.status.value}")
        if not args.no_key:
            from services.demo_state import open_keys
            from tenancy.cli.keys import provision_keys

            # A platform key by default; the customer's own key with --key-provider/--key-id.
            print(
                provision_keys(
                    open_keys(_settings(args)),
                    tenant.id,
                    tenant.slug,
                    provider=args.key_provider,
                    key_id=args.key_id,
                )
            )
    elif args.action == "list":
        for tenant in registry.list():
            print(
                f"{tenant.slug}\t{tenant.id}\t{tenant.region}\t{tenant.status.value}\t"
                f"{tenant.display_name}"
            )
    else:
        tenant = registry.get_by_slug(args.slug)
        move = {
            "suspend": registry.suspend,
            "activate": registry.activate,
            "offboard": registry.offboard,
        }[args.action]
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
