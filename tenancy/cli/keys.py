"""``tenancy keys``: a tenant's encryption keys."""

from __future__ import annotations

import argparse

from tenancy.cli.common import EXIT_ERROR
from tenancy.cli.common import settings_of as _settings


def keys_command(args: argparse.Namespace) -> int:
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
