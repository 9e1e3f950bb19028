"""``tenancy authz bundle``: the policies and their data as an OPA bundle archive, for an
OPA server (or sidecar) that loads bundles itself, or for ``TENANCY_POLICY_BUNDLE``.
``tenancy authz roles``: tenants' role bindings in the database, which every service
process applies before its next decision for that tenant."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tenancy.cli.common import settings_of

ROLES_ACTIONS = {
    "bind": "give a subject exactly these roles (the tenant's roles then come from bindings)",
    "unbind": "take every role of a subject in the tenant away (it keeps none)",
    "list": "where the tenant's roles come from, and each subject's bound roles",
    "release": "delete the tenant's bindings: roles come from tokens again",
}


def add_roles_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``tenancy authz roles bind|unbind|list|release`` (added to the ``authz`` group)."""
    roles = actions.add_parser("roles", help="tenants' role bindings, applied by every replica")
    roles_actions = roles.add_subparsers(dest="roles_action", required=True)
    for name, text in ROLES_ACTIONS.items():
        action = roles_actions.add_parser(name, help=text)
        action.add_argument("--tenant", required=True, metavar="SLUG", help="tenant slug")
        if name in ("bind", "unbind"):
            action.add_argument("--subject", required=True, help="the principal's subject")
        if name == "bind":
            action.add_argument("--roles", required=True, help="comma-separated role names")
        if name != "list":
            action.add_argument(
                "--as", dest="as_subject", default="cli", help="who makes the change (recorded)"
            )
        data_dir(action)


def authz_command(args: argparse.Namespace) -> int:
    """``tenancy authz bundle build|inspect`` and ``tenancy authz roles ...``."""
    if args.authz_action == "roles":
        return _roles(args)
    if args.bundle_action == "build":
        return _build(args)
    return _inspect(args)


def _roles(args: argparse.Namespace) -> int:
    from tenancy.deployment import open_audit, open_engine, open_registry, open_role_bindings

    settings = settings_of(args)
    engine = open_engine(settings)
    registry = open_registry(settings, engine=engine)
    try:
        tenant = registry.get_by_slug(args.tenant)
    finally:
        registry.close()
    audit = open_audit(settings, engine=engine) if args.roles_action != "list" else None
    store = open_role_bindings(settings, engine=engine, events=audit)
    try:
        if args.roles_action == "bind":
            roles = [role.strip() for role in args.roles.split(",")]
            bound = store.bind(tenant.id, args.subject, roles, actor=args.as_subject)
            print(f"{tenant.slug}\t{args.subject}\t{','.join(bound)}")
        elif args.roles_action == "unbind":
            store.unbind(tenant.id, args.subject, actor=args.as_subject)
            print(f"{tenant.slug}\t{args.subject}\tno roles")
        elif args.roles_action == "release":
            gone = store.release(tenant.id, actor=args.as_subject)
            print(f"{tenant.slug}\treleased {gone} bindings: roles come from tokens")
        else:
            bindings = store.of_tenant(tenant.id)
            print(f"{tenant.slug}\troles from {'bindings' if bindings else 'tokens'}")
            for subject, roles in sorted(bindings.items()):
                print(f"{subject}\t{','.join(roles) or 'no roles'}")
    finally:
        store.close()
        if audit is not None:
            audit.close()  # the change's event is written before the command exits
    return 0


def _build(args: argparse.Namespace) -> int:
    from tenancy.authz import PolicyBundle
    from tenancy.authz.archive import write_bundle
    from tenancy.deployment import policy_bundle

    settings = settings_of(args)
    layers = [Path(path) for path in args.data or ()]
    bundle = (
        PolicyBundle.from_directory(args.policies, data=[*layers, *settings.policy_data])
        if args.policies
        else policy_bundle(settings, policy_data=layers)
    )
    signing_key = _read(args.signing_key, "--signing-key") if args.signing_key else None
    archive = write_bundle(
        bundle,
        revision=args.revision,
        signing_key=signing_key,
        key_id=args.key_id,
        scope=args.scope,
    )
    _write_atomically(Path(args.out), archive)
    signed = f", signed (kid {args.key_id})" if signing_key else ", unsigned"
    print(
        f"{args.out}: revision {args.revision or bundle.bundle_revision}, "
        f"{len(bundle.modules)} modules{signed}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from tenancy.authz.archive import read_bundle

    key = _read(args.verification_key, "--verification-key") if args.verification_key else None
    bundle = read_bundle(
        Path(args.archive), verification_key=key, key_id=args.key_id, scope=args.scope
    )
    print(f"revision\t{bundle.bundle_revision}")
    print(f"signature\t{'verified' if key else 'not checked'}")
    for name in sorted(bundle.modules):
        print(f"module\t{name}")
    for key_name in sorted(bundle.data()):
        print(f"data\t{key_name}")
    return 0


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{flag} {path} cannot be read: {exc.strerror}") from exc


def _write_atomically(out: Path, content: bytes) -> None:
    """Write then rename: a bundle server polling ``out`` never serves half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.chmod(temporary, 0o644)  # a bundle is public: the bundle server serves it
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
