"""The edge's OpenAPI document, built from its route table so it cannot drift from it.

Security teams point ``tenancy probe`` at it (``openapi = "/openapi.json"``) to learn the
routes; the request-body examples tell the probe what a valid write looks like.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

EXAMPLES: Mapping[str, Mapping[str, Any]] = {
    "POST /worklogs": {
        "description": "design review",
        "minutes": 45,
        "day": "2026-11-22",
        "comment": "only this tenant can read this",
    },
    "PATCH /worklogs/{id}": {"description": "design review (updated)"},
    "POST /exports": {"format": "json"},
}
# GET /worklogs is paginated: newest first, at most ``limit`` rows, ``next`` links on.
QUERY: Mapping[str, tuple[Mapping[str, Any], ...]] = {
    "GET /worklogs": (
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "rows per page, 1 to 500 (default 100)",
            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "the `next` link's cursor of the previous page; absent: the newest",
            "schema": {"type": "string"},
        },
    ),
}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def openapi_document(
    routes: Iterable[tuple[str, str, str | None]],
    *,
    public: Iterable[str] = (),
    title: str = "tenancy edge",
) -> dict[str, Any]:
    """OpenAPI 3.1 for ``(method, path, scope)`` routes; ``public`` paths need no token."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, scope in routes:
        operation: dict[str, Any] = {
            "summary": f"{method} {path}",
            "security": [{"bearer": [scope] if scope else []}],
            "responses": {"default": {"description": "a JSON body or an RFC 9457 problem"}},
        }
        params = _PARAM.findall(path)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        query = QUERY.get(f"{method} {path}")
        if query is not None:
            operation.setdefault("parameters", []).extend(dict(q) for q in query)
        example = EXAMPLES.get(f"{method} {path}")
        if example is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}, "example": dict(example)}
                },
            }
        paths.setdefault(path, {})[method.lower()] = operation
    for path in public:
        paths.setdefault(path, {})["get"] = {
            "summary": f"GET {path}",
            "security": [],
            "responses": {"200": {"description": "public"}},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
    }
