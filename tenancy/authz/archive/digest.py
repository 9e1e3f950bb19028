"""OPA's file digests (``bundle/hash.go``) and the strict JSON they are taken over.

A structured member is hashed in a canonical form built as Go builds it, so these
helpers reproduce Go's JSON: numbers kept as written, strings escaped as Go's encoder
escapes them, object keys decoded as Go's decoder decodes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from tenancy.authz.archive.layout import DATA, MANIFEST, SIGNATURES, invalid

HASH_ALGORITHM = "SHA-256"

_STRUCTURED = frozenset({DATA, "data.yaml", MANIFEST, SIGNATURES})
# What Go's encoder escapes in a string (HTML escaping off), plus lone surrogates, which
# Go's decoder has already turned into U+FFFD.
_GO_SPECIAL = re.compile('["\\\\\x00-\x1f\u2028\u2029\ud800-\udfff]')
_SURROGATE = re.compile("[\ud800-\udfff]")
_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def file_digest(name: str, content: bytes) -> str:
    """The hex SHA-256 digest OPA signs and checks for the member ``name``: over the
    canonical form of a structured file (so its layout is free), else over the bytes.

    Raises:
        PolicyBundleInvalid: a structured file is not UTF-8 JSON (YAML is not read).
    """
    if PurePosixPath(name).name not in _STRUCTURED:
        return hashlib.sha256(content).hexdigest()
    if PurePosixPath(name).name == "data.yaml":
        raise invalid(f"{name}: YAML data is not supported")
    value = load_json(name, content, literal_numbers=True)
    parts: list[str] = []
    _canonical(value, parts)
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


class _Number:
    """A JSON number as written: OPA decodes numbers as ``json.Number`` and hashes the
    literal, so ``1.0`` and ``1`` differ."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _canonical(value: Any, parts: list[str]) -> None:
    """Append OPA's canonical form of ``value`` (``walk`` in OPA's hash.go)."""
    if isinstance(value, dict):
        parts.append("{")
        for index, key in enumerate(sorted(value)):
            parts.append("," if index else "")
            parts.append(go_json_string(key))
            parts.append(":")
            _canonical(value[key], parts)
        parts.append("}")
    elif isinstance(value, list):
        parts.append("[")
        for index, item in enumerate(value):
            parts.append("," if index else "")
            _canonical(item, parts)
        parts.append("]")
    elif isinstance(value, _Number):
        parts.append(value.text)
    elif isinstance(value, str):
        parts.append(go_json_string(value))
    else:
        parts.append({True: "true", False: "false", None: "null"}[value])


def go_json_string(value: str) -> str:
    """``value`` as Go's ``json.Encoder`` writes it with HTML escaping off, which OPA
    hashes: ``"`` ``\\`` and the short escapes ``\\b \\f \\n \\r \\t``, ``\\u00xx`` for
    the other control characters, ``\\u2028``/``\\u2029``, everything else as it is (a
    lone surrogate becomes U+FFFD, as Go's decoder makes it). That is Go 1.22 and later,
    as current OPA releases are built; an OPA built with Go 1.21 or earlier wrote
    ``\\u0008``/``\\u000c`` for ``\\b``/``\\f``, so a string holding those hashes
    differently there."""
    return '"' + _GO_SPECIAL.sub(_go_escape, value) + '"'


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _GO_ESCAPES:
        return _GO_ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return f"\\u{ord(char):04x}"


def _go_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as Go decodes it: lone surrogates in keys become U+FFFD, last one wins."""
    return {_SURROGATE.sub("\ufffd", key): value for key, value in pairs}


def member_text(name: str, content: bytes) -> str:
    """The member ``name`` decoded as UTF-8, or the archive refused."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"{name} is not UTF-8") from exc


def load_json(name: str, content: bytes, *, literal_numbers: bool = False) -> Any:
    """Strict JSON (no NaN or Infinity, as Go); numbers kept as written when asked."""
    number: Callable[[str], Any] | None = _Number if literal_numbers else None
    try:
        return json.loads(
            member_text(name, content),
            parse_int=number,
            parse_float=number,
            parse_constant=_no_constant,
            object_pairs_hook=_go_keys if literal_numbers else None,
        )
    except (ValueError, RecursionError) as exc:
        raise invalid(f"{name} is not valid JSON ({exc})") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
