"""Demonstrates strict request bodies: the boundary refuses what the service cannot store.

A body is read no further than ``MAX_BODY_BYTES`` (413 ``payload-too-large``: checked on
``Content-Length`` before reading, and while reading a chunked body). A body must be
declared as JSON (``application/json`` or ``application/*+json``, UTF-8; anything else,
or no content type at all, is 415 ``unsupported-media-type``; an empty body needs none)
and be one JSON object (422 otherwise, also when nested too deeply to parse).

Fields are checked alike on every database: unknown fields (such as ``tenant_id``) are
refused, and text refuses what PostgreSQL cannot store in ``text`` (NUL, U+0000) and what
has no UTF-8 encoding (unpaired surrogates, which JSON's ``"\\ud800"`` escapes produce).
SQLite would store both; refusing them here keeps the two deployments identical. Each
refusal is an ``InvalidRequest`` (422) whose ``errors`` name the fields; a field name that
holds such characters is echoed with them escaped (``\\u0000``), never raw.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from starlette.requests import Request

from tenancy.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 16 * 1024
FIELDS = ("description", "minutes", "day", "comment")
OPTIONAL = frozenset({"comment"})
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


async def read_body(request: Request, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body of a JSON request, never holding more than ``limit`` bytes of it.

    Raises:
        PayloadTooLarge: the declared length (before anything is read) or the bytes
            received so far exceed ``limit``.
        UnsupportedMediaType: a non-empty body not declared as JSON.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit():
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        if int(declared) > 0:
            _require_json(request)  # refused before a byte of the body is read
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw:
        _require_json(request)
    return raw


def _require_json(request: Request) -> None:
    media, *params = request.headers.get("content-type", "").split(";")
    kind, _, subtype = media.strip().lower().partition("/")
    charsets = [
        value.strip().strip('"').lower()
        for name, _, value in (p.partition("=") for p in params)
        if name.strip().lower() == "charset"
    ]
    if (
        kind != "application"
        or not (subtype == "json" or subtype.endswith("+json"))
        or any(c not in ("utf-8", "utf8") for c in charsets)
    ):
        raise UnsupportedMediaType("request body must be JSON (application/json, UTF-8)")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """One JSON object from UTF-8 bytes; ``NaN`` and ``Infinity`` are not JSON."""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except RecursionError as exc:  # the C parser's depth guard: a client error, not ours
        raise InvalidRequest("request body is nested too deeply") from exc
    except ValueError as exc:  # also bad UTF-8, and integers over Python's digit limit
        raise InvalidRequest("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def worklog_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validate worklog fields; every field is required unless ``partial``.

    The tenant is never a field: it comes from the verified context only.
    """
    problems: dict[str, str] = {
        _shown(name): "unknown field" for name in body if name not in FIELDS
    }
    values: dict[str, Any] = {}
    for name in FIELDS:
        if name not in body:
            if not partial and name not in OPTIONAL:
                problems[name] = "required"
            continue
        try:
            values[name] = _VALIDATORS[name](body[name])
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise InvalidRequest("the worklog is invalid", errors=problems)
    return values


def _shown(name: str) -> str:
    """A client's field name, safe to echo: NUL and lone surrogates escaped."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def _storable(value: str) -> str:
    found = _UNSTORABLE.search(value)
    if found is None:
        return value
    if found.group() == "\x00":
        raise ValueError("must not contain NUL (U+0000)")
    raise ValueError("must not contain unpaired surrogates (U+D800-U+DFFF)")


def _description(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ValueError("must be 1-500 characters")
    return _storable(value).strip()


def _minutes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1440:
        raise ValueError("must be an integer from 1 to 1440")
    return value


def _day(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError("must be an ISO date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("must be an ISO date (YYYY-MM-DD)") from exc


def _comment(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise ValueError("must be a string of at most 2000 characters, or null")
    return _storable(value)


_VALIDATORS = {"description": _description, "minutes": _minutes, "day": _day, "comment": _comment}
