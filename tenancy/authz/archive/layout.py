"""The archive's layout, shared by writing and reading: the names of its special members,
which member names are safe, and the package of a module (which root must own it)."""

from __future__ import annotations

import re

from tenancy.errors import ConfigurationError, PolicyBundleInvalid

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
DATA = "data.json"

_PACKAGE = re.compile(
    r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)[ \t]*(#.*)?$",
    re.MULTILINE,
)
_PACKAGE_LINE = re.compile(r"^[ \t]*package\b", re.MULTILINE)


def unsafe_name(name: str) -> str | None:
    """Why ``name`` (no leading "/") is no safe relative path, or None."""
    if not name:
        return "has no name"
    if name.startswith("/"):
        return "is an absolute path"
    if "\\" in name:
        return "contains a backslash"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' path segment"
    return None


def package_path(name: str, source: str) -> tuple[str, ...]:
    """The package of a module as a data path (``package a.b`` -> ("a", "b")).

    Raises:
        ConfigurationError: no package line, or one this reader does not understand
            (quoted path segments).
    """
    match = _PACKAGE.search(source)
    first = _PACKAGE_LINE.search(source)
    if match is None or first is None or first.start() != match.start():
        raise ConfigurationError(f"module {name} declares no package this reader understands")
    return tuple(match.group(1).split("."))


def invalid(problem: str) -> PolicyBundleInvalid:
    """The error refusing an archive, for every reader's check to raise alike."""
    return PolicyBundleInvalid(f"policy bundle: {problem}")
