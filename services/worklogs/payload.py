"""Demonstrates strict request bodies: unknown fields (such as ``tenant_id``) are refused."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from tenancy.errors import InvalidRequest

MAX_BODY_BYTES = 16 * 1024
FIELDS = ("description", "minutes", "day", "comment")
OPTIONAL = frozenset({"comment"})


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest("request body is too large")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def worklog_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validate worklog fields; every field is required unless ``partial``.

    The tenant is never a field: it comes from the verified context only.
    """
    problems: dict[str, str] = {name: "unknown field" for name in body if name not in FIELDS}
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


def _description(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ValueError("must be 1-500 characters")
    return value.strip()


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
    return value


_VALIDATORS = {"description": _description, "minutes": _minutes, "day": _day,
               "comment": _comment}
