"""Writing a policy bundle as an OPA bundle archive, reproducibly: members sorted, every
timestamp and owner zeroed, so equal bundles give byte-identical archives."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any

from tenancy.authz.archive.layout import DATA, MANIFEST, SIGNATURES, package_path, unsafe_name
from tenancy.authz.archive.signing import signature
from tenancy.authz.bundle import PolicyBundle
from tenancy.errors import ConfigurationError


def write_bundle(
    bundle: PolicyBundle,
    *,
    revision: str | None = None,
    signing_key: bytes | None = None,
    key_id: str = "tenancy",
    scope: str | None = None,
    issued_at: int | None = None,
) -> bytes:
    """``bundle`` as a gzip'd OPA bundle archive, signed when ``signing_key`` is given.

    ``revision`` is the manifest revision (default: ``bundle.bundle_revision``), what OPA
    and the embedded engine report with every decision. ``signing_key`` is a PEM private
    key (RSA of 2048 bits or more, or EC P-256/P-384/P-521): the signature names it
    ``key_id`` and carries ``scope`` when given. ``issued_at`` fixes the signature's
    ``iat`` (default: now) so that a signed build can be reproduced.

    Raises:
        ConfigurationError: the signing key is not a supported, unencrypted PEM private
            key; ``key_id`` is empty; a module declares no package or has a path OPA
            would not load as a module; the data is not JSON.
    """
    files = _bundle_files(bundle, revision or bundle.bundle_revision)
    if signing_key is not None:
        token = signature(files, signing_key, key_id=key_id, scope=scope, issued_at=issued_at)
        files = {SIGNATURES: _compact_json({"signatures": [token]}), **files}
    return _tar_gz(files)


def _bundle_files(bundle: PolicyBundle, revision: str) -> dict[str, bytes]:
    """Every member but the signatures, by name (no leading "/"), sorted."""
    files: dict[str, bytes] = {}
    roots: set[str] = set()
    for path, source in bundle.modules.items():
        _check_module_path(path)
        roots.add(package_path(path, source)[0])
        files[path] = _utf8(source, f"module {path}")
    data = bundle.data()
    for key in data:
        if not key or "/" in key:
            raise ConfigurationError(f"data key {key!r} cannot be a bundle root")
        roots.add(key)
    files[MANIFEST] = _compact_json({"revision": revision, "roots": sorted(roots)})
    files[DATA] = _compact_json(data)
    return dict(sorted(files.items()))


def _check_module_path(path: str) -> None:
    problem = unsafe_name(path)
    if problem is not None:
        raise ConfigurationError(f"module path {path!r} {problem}")
    if not path.endswith(".rego") or path.endswith("_test.rego"):
        raise ConfigurationError(f"module path {path!r} must end in .rego (not _test.rego)")


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A gzip'd tar of ``files`` in their order, with nothing of the build host in it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo("/" + name)
            info.type = tarfile.REGTYPE
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def _compact_json(value: Any) -> bytes:
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bundle data is not JSON: {exc}") from exc
    return _utf8(text, "bundle data")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"{what} is not valid Unicode (a lone surrogate)") from exc
