"""``tenancy authz bundle``: the policies and their data as an OPA bundle archive, for an
OPA server (or sidecar) that loads bundles itself, or for ``TENANCY_POLICY_BUNDLE``."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tenancy.cli.common import settings_of


def authz_command(args: argparse.Namespace) -> int:
    """``tenancy authz bundle build|inspect``."""
    if args.bundle_action == "build":
        return _build(args)
    return _inspect(args)


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
