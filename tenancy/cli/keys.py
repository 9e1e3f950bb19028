"""``tenancy keys``: a tenant's encryption keys."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tenancy.cli.common import EXIT_ERROR
from tenancy.cli.common import settings_of as _settings

if TYPE_CHECKING:
    from tenancy.keys import TenantKeys


def provision_keys(
    keys: TenantKeys,
    tenant_id: str,
    slug: str,
    *,
    provider: str | None,
    key_id: str | None,
    cache_ttl: float | None = None,
) -> str:
    """Give a tenant its keys: a platform KEK, and on top of it the customer's key when
    ``provider`` or ``key_id`` is given (``key_id`` unset: create one there)."""
    from tenancy.keys import KeyRef

    ref = None
    if provider or key_id:
        name = provider or "customer-local"
        ref = (
            KeyRef(name, key_id) if key_id else keys.provider(name).create_key(tenant_id=tenant_id)
        )
    record = keys.provision(tenant_id, key=ref, cache_ttl=cache_ttl)
    line = f"{slug}\tkey\t{record.ref.provider}:{record.ref.key_id}\tplatform"
    if record.cmk is not None:
        line += f"\n{slug}\tkey\t{record.cmk.provider}:{record.cmk.key_id}\tcustomer"
    return line


def keys_command(args: argparse.Namespace) -> int:
    """``tenancy keys ...``: a tenant's keys (status, provision, rotate, shred, ...)."""
    from tenancy.deployment import open_keys, open_registry
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
        ttl = "default" if kek.cache_ttl is None else f"{kek.cache_ttl:g}s"
        print(
            f"{tenant.slug}\tkek\t{kek.ref.provider}:{kek.ref.key_id}\t{kek.managed_by}\t"
            f"{kek.state}\t{enabled}\tversions={versions}\tcache-ttl={ttl}"
        )
        if kek.cmk is not None:
            cmk = status.cmk_info
            state = "unknown" if cmk is None else ("enabled" if cmk.enabled else "DISABLED")
            print(f"{tenant.slug}\tcmk\t{kek.cmk.provider}:{kek.cmk.key_id}\tcustomer\t{state}")
        for dek in status.data_keys:
            wrapped = f"kek-version={dek.kek.version}"
            if dek.cmk is not None:
                wrapped += f"+cmk-version={dek.cmk.version}"
            print(
                f"{tenant.slug}\tdek\t{dek.purpose}\tv{dek.version}\t{dek.state}\t"
                f"{wrapped}\tmessages>={dek.messages}\t{dek.created_at.isoformat()}"
            )
    elif args.action == "provision":
        print(
            provision_keys(
                keys,
                tenant.id,
                tenant.slug,
                provider=args.key_provider,
                key_id=args.key_id,
                cache_ttl=args.cache_ttl,
            )
        )
    elif args.action == "destroy-retired":
        done = keys.destroy_retired(tenant.id)
        print(f"{tenant.slug}: destroyed KEK version(s) {','.join(done) or 'none (none due)'}")
    elif args.action == "announce":
        keys.announce(tenant.id)
        print(f"{tenant.slug}: every process drops what it cached of the tenant's keys")
    elif args.action == "ttl":
        keys.set_cache_ttl(tenant.id, args.seconds)
        shown = "the default" if args.seconds is None else f"{args.seconds:g} s"
        print(f"{tenant.slug}: data keys cached for {shown}; every process applies it now")
    elif args.action == "rotate":
        if args.data_key:
            version = keys.rotate_data_key(tenant.id, args.data_key)
            print(f"{tenant.slug}: data key {args.data_key} now at version {version}")
        else:
            count = keys.rotate_kek(tenant.id)
            print(
                f"{tenant.slug}: KEK rotated; {count} data key(s) re-wrapped, no data "
                f"touched; replaced versions destroyed"
                + ("" if not keys.kek_grace else f" after {keys.kek_grace}")
            )
    elif args.action == "use-cmk":
        provider = keys.provider(args.provider)
        ref = (
            KeyRef(args.provider, args.key_id)
            if args.key_id
            else provider.create_key(tenant_id=tenant.id)
        )
        count = keys.use_provider(tenant.id, ref)
        print(
            f"{tenant.slug}: now under customer key {ref.provider}:{ref.key_id}; "
            f"{count} data key(s) re-wrapped; the previous platform KEK versions destroyed"
        )
    elif args.action == "revoke-test":
        status = keys.status(tenant.id)
        if status.kek is None:
            raise ValueError("the tenant has no key")
        if status.kek.cmk is None:
            # A platform key: suspending it is a platform-side change, seen at once.
            if args.restore:
                keys.enable_kek(tenant.id)
                print(f"{tenant.slug}: platform key re-enabled; every process reads again")
            else:
                keys.disable_kek(tenant.id)
                print(
                    f"{tenant.slug}: platform key disabled; every process refuses the "
                    f"tenant's encrypted data from its next use"
                )
        else:
            # The customer's key, disabled in "its" KMS: the platform cannot observe this,
            # so running services notice within the tenant's cache TTL.
            provider = keys.provider(status.kek.cmk.provider)
            cache_ttl = keys.cache.ttl if status.kek.cache_ttl is None else status.kek.cache_ttl
            if args.restore:
                provider.enable(status.kek.cmk)
                print(
                    f"{tenant.slug}: customer key re-enabled; reads recover once the key "
                    f"is unwrapped again"
                )
            else:
                provider.disable(status.kek.cmk)
                print(
                    f"{tenant.slug}: customer key disabled (as if the customer revoked it); "
                    f"encrypted reads fail within the tenant's cache TTL ({cache_ttl:g} s)"
                )
    elif args.action == "shred":
        if args.confirm != tenant.slug:
            raise ValueError(f"shredding is irreversible: pass --confirm {tenant.slug}")
        keys.shred(tenant.id)
        print(f"{tenant.slug}: keys destroyed; its encrypted data can never be read again")
    return 0
