"""What was tested: tenancy's, Python's and the key libraries' versions, the policy
bundle's revision and digest, and the PostgreSQL server's version.

Its own module because the versions are read from the environment (installed
distributions, the bundle on disk), unlike the tools' documents the pack judges.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from tenancy.authz import PolicyBundle

LIBRARIES = (
    "starlette",
    "sqlalchemy",
    "cryptography",
    "pyjwt",
    "jinja2",
    "regopy",
    "opa-golib-python-bindings",
)


def bundle_digest(bundle: PolicyBundle) -> str:
    """``sha256:`` over the bundle's modules and data, canonically encoded."""
    _, data = bundle.snapshot()
    canonical = json.dumps(
        {"modules": bundle.modules, "data": data},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def collect_versions(
    *, bundle: PolicyBundle | None = None, db_matrix: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """tenancy's, Python's and the key libraries' versions, the policy bundle's revision
    and digest, and the PostgreSQL server's version when the database matrix has it."""
    bundle = bundle if bundle is not None else PolicyBundle.from_directory()
    return {
        "tenancy": _version("tenancy"),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "libraries": {name: _version(name) for name in LIBRARIES},
        "policy_bundle": {"revision": bundle.revision, "digest": bundle_digest(bundle)},
        "postgresql": None if db_matrix is None else db_matrix.get("server_version"),
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
