"""Reading an OPA bundle archive into a policy bundle. The whole archive is refused when
any part of it is unsafe, ambiguous or unverified: nothing of a refused archive is loaded."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from tenancy.authz.archive.digest import load_json, member_text
from tenancy.authz.archive.layout import (
    DATA,
    MANIFEST,
    SIGNATURES,
    invalid,
    package_path,
    unsafe_name,
)
from tenancy.authz.archive.signing import load_verification_key, verify
from tenancy.authz.bundle import PolicyBundle
from tenancy.errors import ConfigurationError

DEFAULT_MAX_BYTES = 16 * 2**20

# Files OPA gives a meaning the embedded engine cannot honour: refused, never skipped.
_UNSUPPORTED = {
    "data.yaml": "YAML data",
    "data.yml": "YAML data",
    "policy.wasm": "a Wasm policy",
    "patch.json": "a delta bundle patch",
}


def read_bundle(
    source: bytes | str | Path,
    *,
    verification_key: bytes | None = None,
    key_id: str | None = None,
    scope: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PolicyBundle:
    """The policy bundle in the archive ``source`` (its bytes, or a path to it), its
    ``bundle_revision`` the manifest's.

    With ``verification_key`` (a PEM public key or certificate: RSA, or EC P-256/P-384/
    P-521) the archive must carry exactly one signature by that key, naming ``key_id``
    when given and carrying ``scope`` (absent on both sides counts as equal), and the
    signature must cover every member, each with its digest. Without it any signature
    is ignored: the caller chose not to verify (a bundle from its own build, say).

    ``max_bytes`` bounds the uncompressed archive (files and tar headers), counted while
    decompressing, so a small archive that inflates without end is refused early.

    Raises:
        ConfigurationError: the verification key is not a supported PEM public key, or
            the path cannot be read.
        PolicyBundleInvalid: the archive is not a gzip'd tar, is too large, holds a
            member that is not a regular file or has an unsafe or duplicate name, lacks
            a valid manifest or a module, has a module or data outside its roots or data
            that is not a JSON object, or fails its signature check.
    """
    key = load_verification_key(verification_key) if verification_key is not None else None
    members = _members(_decompressed(source, max_bytes))
    if key is not None:
        verify(members, key, key_id=key_id, scope=scope)
    return _bundle_from(members)


# -- the tar stream ---------------------------------------------------------------------------


def _decompressed(source: bytes | str | Path, max_bytes: int) -> bytes:
    """The tar stream, at most ``max_bytes`` of it."""
    if isinstance(source, bytes):
        compressed = source
    else:
        try:
            compressed = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"policy bundle {source} cannot be read: {exc.strerror}"
            ) from exc
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(compressed), mode="rb") as stream:
            raw = stream.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise invalid(f"not a gzip archive ({exc})") from exc
    if len(raw) > max_bytes:
        raise invalid(f"larger than {max_bytes} bytes uncompressed")
    return raw


def _members(raw: bytes) -> dict[str, bytes]:
    """Every regular file of the tar stream, by name without its leading "/"."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for info in archive:
                if info.isdir():
                    continue
                name = _member_name(info)
                if name in members:
                    raise invalid(f"{name} appears twice")
                extracted = archive.extractfile(info)
                if extracted is None:  # pragma: no cover - regular files always extract
                    raise invalid(f"{name} cannot be read")
                members[name] = extracted.read()
            end = archive.offset
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise invalid(f"not a tar archive ({exc})") from exc
    # tarfile ends quietly at a damaged header; only zeros may follow the last member.
    if raw[end:].strip(b"\0"):
        raise invalid("a damaged tar header or data after the end of the archive")
    return members


def _member_name(info: tarfile.TarInfo) -> str:
    name = info.name.removeprefix("/")
    problem = unsafe_name(name)
    if problem is not None:
        raise invalid(f"member {info.name!r} {problem}")
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise invalid(f"member {name} is not a regular file (a link or device)")
    return name


# -- the bundle -------------------------------------------------------------------------------


def _bundle_from(members: Mapping[str, bytes]) -> PolicyBundle:
    revision, roots = _manifest(members)
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, content in members.items():
        path = PurePosixPath(name)
        if name in (MANIFEST, SIGNATURES):
            continue
        if path.name in _UNSUPPORTED:
            raise invalid(f"{name}: {_UNSUPPORTED[path.name]} is not supported")
        if path.name == MANIFEST or name.endswith("signatures.json"):
            raise invalid(f"{name}: a manifest or signature belongs at the archive root")
        if path.name == DATA:
            _insert(data, path.parent.parts, _data_file(name, content), name)
        elif name.endswith(".rego") and not name.endswith("_test.rego"):
            modules[name] = member_text(name, content)
    if not modules:
        raise invalid("no Rego module")
    _check_roots(roots, modules, data)
    return PolicyBundle(modules, data, bundle_revision=revision)


def _manifest(members: Mapping[str, bytes]) -> tuple[str, list[tuple[str, ...]]]:
    """The manifest's revision and roots (each a data path; () owns everything)."""
    if MANIFEST not in members:
        raise invalid("no .manifest")
    manifest = load_json(MANIFEST, members[MANIFEST])
    if not isinstance(manifest, dict) or not isinstance(manifest.get("revision"), str):
        raise invalid(".manifest must be a JSON object with a string revision")
    roots = manifest.get("roots")
    if roots is None:
        roots = [""]  # OPA's default: the bundle owns all of data
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise invalid(".manifest roots must be a list of strings")
    if manifest.get("wasm"):
        raise invalid(".manifest: Wasm modules are not supported")
    paths = [tuple(root.strip("/").split("/")) if root.strip("/") else () for root in roots]
    for index, first in enumerate(paths):
        for second in paths[index + 1 :]:
            if _within(first, second) or _within(second, first):
                raise invalid(f".manifest roots overlap: {roots}")
    return manifest["revision"], paths


def _check_roots(
    roots: list[tuple[str, ...]], modules: Mapping[str, str], data: dict[str, Any]
) -> None:
    """OPA's rule: every package and every data path lies under a root."""
    for name, source in modules.items():
        try:
            package = package_path(name, source)
        except ConfigurationError as exc:
            raise invalid(str(exc)) from exc
        if not any(_within(package, root) for root in roots):
            raise invalid(f"module {name} (package {'.'.join(package)}) is outside the roots")
    _check_data_roots(roots, data, ())


def _check_data_roots(roots: list[tuple[str, ...]], node: Any, path: tuple[str, ...]) -> None:
    if any(_within(path, root) for root in roots):
        return
    if isinstance(node, dict) and any(_within(root, path) for root in roots):
        for key, value in node.items():
            _check_data_roots(roots, value, (*path, key))
        return
    raise invalid(f"data at /{'/'.join(path)} is outside the roots")


def _within(path: tuple[str, ...], root: tuple[str, ...]) -> bool:
    return path[: len(root)] == root


def _data_file(name: str, content: bytes) -> dict[str, Any]:
    value = load_json(name, content)
    if not isinstance(value, dict):
        raise invalid(f"{name} must hold a JSON object")
    return value


def _insert(data: dict[str, Any], where: tuple[str, ...], value: dict[str, Any], name: str) -> None:
    """Lay ``value`` at the path ``where`` of ``data``: objects merge, and a key defined
    by two files is refused, as OPA merges data files."""
    node = data
    for key in where:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise invalid(f"{name} overlaps data defined by another file")
    _merge(node, value, name)


def _merge(into: dict[str, Any], more: Mapping[str, Any], name: str) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, name)
        elif key in into:
            raise invalid(f"{name} defines data key {key!r} that another file defines")
        else:
            into[key] = value
