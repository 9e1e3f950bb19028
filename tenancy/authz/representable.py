"""Policy input every engine reads alike, or no decision at all.

The engines do not represent every JSON value the same way. rego-cpp (``regopy``, the
embedded engine) truncates a string at its first NUL, wraps an integer past 64 bits,
raises ``UnicodeEncodeError`` on a lone surrogate, keeps only about six decimal places
of a float (``1234567.1234561 == 1234567.1234562`` there), and takes a Python ``set`` or
a non-string key that OPA never sees; OPA reads such input faithfully. The same input
could then be allowed by one engine and denied by another (``roles: ["member\\u0000x"]``
is ``member`` to rego-cpp). So before any engine is asked, :func:`check_representable`
refuses, with ``DecisionUnavailable``:

=====================  ================================================================
value                  refused when
=====================  ================================================================
``str``                it holds a control character (Unicode category Cc: U+0000-U+001F,
                       U+007F-U+009F) or a lone surrogate (U+D800-U+DFFF); object keys too
``int``                outside the signed 64-bit range
``float``              not finite (NaN, infinities are not JSON), not a whole number (the
                       library's own input holds none: times are whole seconds), or
                       beyond +-2^53 (rego-cpp cannot parse ``1.7976931348623155e+308``)
object                 a key is not a string
anything else          not ``None``, ``bool``, ``int``, ``float``, ``str``, a mapping, a
                       list or a tuple; or nested deeper than ``MAX_DEPTH``
=====================  ================================================================

Whether a representable value is also *well formed* (present, of its type) is the
policy's own check (reason ``invalid-input``), so every client of a shared OPA server
gets it too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from tenancy.errors import DecisionUnavailable

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
FLOAT_EXACT = float(2**53)  # every whole float up to here is an exact integer
MAX_DEPTH = 32

# Cc is exactly these two ranges; surrogates are category Cs. A str holding a lone
# surrogate cannot be encoded as UTF-8, which every engine needs.
_UNREPRESENTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_representable(document: Mapping[str, Any]) -> None:
    """Refuse policy input that an engine could not read exactly as given.

    Raises:
        DecisionUnavailable: the document is not a mapping, or holds a value from the
            table above; ``reason`` names where (for logs only).
    """
    if not isinstance(document, Mapping):
        raise DecisionUnavailable("policy input is not an object")
    try:
        _check(document, 0)
    except _Unrepresentable as exc:
        where = "".join(reversed(exc.path))
        raise DecisionUnavailable(f"policy input{where} holds {exc.what}") from None


class _Unrepresentable(Exception):
    """Internal: what was refused; the path is collected while unwinding (so the common,
    accepted case builds no strings)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.path: list[str] = []


def _check(value: Any, depth: int) -> None:
    if isinstance(value, str):
        if _UNREPRESENTABLE.search(value):
            raise _Unrepresentable("a control character or lone surrogate")
    elif value is None or isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _Unrepresentable("an integer outside the signed 64-bit range")
    elif isinstance(value, float):
        if (
            not math.isfinite(value)
            or not value.is_integer()
            or not -FLOAT_EXACT <= value <= FLOAT_EXACT
        ):
            raise _Unrepresentable("a number that is not finite, not whole, or too large")
    elif isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            raise _Unrepresentable(f"nesting deeper than {MAX_DEPTH}")
        if isinstance(value, Mapping):
            for key, item in value.items():
                try:
                    if not isinstance(key, str):
                        raise _Unrepresentable("an object key that is not a string")
                    if _UNREPRESENTABLE.search(key):
                        raise _Unrepresentable("a key with a control character or lone surrogate")
                    _check(item, depth + 1)
                except _Unrepresentable as exc:
                    exc.path.append(f".{_shown(key)}")
                    raise
        else:
            for index, item in enumerate(value):
                try:
                    _check(item, depth + 1)
                except _Unrepresentable as exc:
                    exc.path.append(f"[{index}]")
                    raise
    else:
        raise _Unrepresentable(f"a value of type {type(value).__name__}")


def _shown(key: object) -> str:
    # Keys can come from a caller (resource attributes): escaped and cut short for logs.
    return ascii(str(key)[:32])[1:-1]
