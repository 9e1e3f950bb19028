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
    if route.method not in ("POST", "PUT", "PATCH"):
        return None
    return with_canary({} if route.body is None else route.body, canary)


def with_canary(value: Any, canary: str) -> Any:
    if isinstance(value, str):
        return value.replace(CANARY, canary)
    if isinstance(value, list):
        return [with_canary(v, canary) for v in value]
    if isinstance(value, dict):
        return {k: with_canary(v, canary) for k, v in value.items()}
    return value


def captured(response: httpx.Response, source: str, pattern: re.Pattern[str] | None) -> str | None:
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
    return {
        TENANT_HEADERS[0]: victim["id"],
        TENANT_HEADERS[1]: victim["slug"],
        TENANT_HEADERS[2]: victim["slug"],
    }


def tenant_query(victim: Mapping[str, str]) -> dict[str, str]:
    return {
        TENANT_QUERY[0]: victim["id"],
        TENANT_QUERY[1]: victim["slug"],
        TENANT_QUERY[2]: victim["id"],
    }


def canonical(text: str) -> str:
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        return text
