"""``tenancy tenants``: the tenant registry, and each tenant's keys from the start."""

from __future__ import annotations

import argparse

from tenancy.cli.common import settings_of as _settings


def tenants_command(args: argparse.Namespace) -> int:
    """``tenancy tenants ...``: create (with keys), list, suspend, activate, offboard."""
    from tenancy.deployment import open_registry

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
            from tenancy.cli.keys import provision_keys
            from tenancy.deployment import open_keys

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
            from tenancy.deployment import open_keys

            # Offboarding ends with crypto-shredding: the tenant's data keys go with it.
            keys = open_keys(_settings(args))
            kek = keys.status(moved.id).kek
            if kek is not None and kek.state != "destroyed":
                keys.shred(moved.id)
                print(f"{moved.slug}\tkeys destroyed")
            elif kek is not None:
                print(f"{moved.slug}\tkeys already destroyed")
    return 0
