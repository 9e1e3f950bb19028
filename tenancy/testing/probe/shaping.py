"""Shaping the probe's requests: paths with parameters, bodies with canaries, the tenant
headers and query parameters of the naming attacks, and values captured from responses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from tenancy.testing.probe.config import PATH_PARAM, Route

TENANT_HEADERS = ("X-Tenant-ID", "X-Tenant", "Tenant")
TENANT_QUERY = ("tenant_id", "tenant", "tenantId")
CANARY = "{canary}"


def render_path(route: Route, values: Mapping[str, str]) -> str | None:
    """The route's path with each ``{param}`` replaced by its captured value
    (percent-encoded, ``/`` included), or None if any parameter has no value yet: the
    request cannot be made."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return quote(value, safe="")

    path = PATH_PARAM.sub(fill, route.path)
    return None if missing else path


def request_body(route: Route, canary: str) -> Any:
    """The JSON body to send: None for methods other than POST, PUT and PATCH, otherwise the
    route's body (``{}`` if it has none) with ``{canary}`` replaced."""
    if route.method not in ("POST", "PUT", "PATCH"):
        return None
    return with_canary({} if route.body is None else route.body, canary)


def with_canary(value: Any, canary: str) -> Any:
    """``value`` with every ``{canary}`` in its strings replaced by ``canary``, recursing
    into lists and dicts (keys are left alone); other values unchanged."""
    if isinstance(value, str):
        return value.replace(CANARY, canary)
    if isinstance(value, list):
        return [with_canary(v, canary) for v in value]
    if isinstance(value, dict):
        return {k: with_canary(v, canary) for k, v in value.items()}
    return value


def captured(response: httpx.Response, source: str, pattern: re.Pattern[str] | None) -> str | None:
    """A value captured from ``response``: from a header (``header:<name>``) or from a
    dotted path into the JSON body; with ``pattern``, its first group. None when the body is
    not JSON, the value is missing, an object or a list, or the pattern does not match."""
    if source.startswith("header:"):
        raw: Any = response.headers.get(source.removeprefix("header:"))
    else:
        try:
            raw = response.json()
        except ValueError:
            return None
        for part in source.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
    if raw is None or isinstance(raw, dict | list):
        return None
    text = str(raw)
    if pattern is None:
        return text
    match = pattern.search(text)
    return match.group(1) if match else None


def tenant_headers(victim: Mapping[str, str]) -> dict[str, str]:
    """The headers of the tenant-header attack, naming ``victim`` by id and slug: a service
    that picks its tenant from any of them instead of the credential leaks."""
    return {
        TENANT_HEADERS[0]: victim["id"],
        TENANT_HEADERS[1]: victim["slug"],
        TENANT_HEADERS[2]: victim["slug"],
    }


def tenant_query(victim: Mapping[str, str]) -> dict[str, str]:
    """The query parameters of the tenant-query attack, naming ``victim`` by id and slug."""
    return {
        TENANT_QUERY[0]: victim["id"],
        TENANT_QUERY[1]: victim["slug"],
        TENANT_QUERY[2]: victim["id"],
    }


def canonical(text: str) -> str:
    """``text`` as sorted-key JSON if it parses (so snapshots compare equal whatever the key
    order), otherwise unchanged."""
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        return text
