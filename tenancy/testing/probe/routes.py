"""Where the probe's routes come from: the config, an OpenAPI document, or a Starlette app.

Routes found in a document or an app are merged with the config's: the config adds what a
document cannot say (which route seeds data, what a request body looks like).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tenancy.errors import ProbeConfigError
from tenancy.testing.probe.config import Route

METHODS = ("get", "post", "put", "patch", "delete")


def routes_from_openapi(document: Mapping[str, Any]) -> list[Route]:
    """Every operation of an OpenAPI 3 document; a JSON request-body example becomes the
    body. Operations that declare ``security: []`` are public and left out."""
    paths = document.get("paths")
    if not isinstance(document.get("openapi"), str) or not isinstance(paths, Mapping):
        raise ProbeConfigError("the OpenAPI document has no 'openapi' version or 'paths'")
    found = []
    for path, item in paths.items():
        if not isinstance(item, Mapping) or not str(path).startswith("/"):
            continue
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, Mapping) or operation.get("security") == []:
                continue
            found.append(Route(method.upper(), str(path), _example(operation)))
    return found


def load_openapi(text: str, *, where: str) -> list[Route]:
    """The probe routes of an OpenAPI document given as JSON text (``where`` names it in
    errors); operations declaring ``security: []`` (public) are left out.

    Raises:
        ProbeConfigError: the text is not JSON, or not an OpenAPI document with paths.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProbeConfigError(f"{where} is not a JSON OpenAPI document: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ProbeConfigError(f"{where} is not an OpenAPI document")
    return routes_from_openapi(document)


def read_openapi_file(path: str | Path) -> list[Route]:
    """The probe routes of the OpenAPI JSON document at ``path`` (see ``load_openapi``).

    Raises:
        ProbeConfigError: the file cannot be read or is not an OpenAPI JSON document.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProbeConfigError(f"cannot read the OpenAPI document {path}: {exc.strerror}") from exc
    return load_openapi(text, where=str(path))


def routes_from_app(app: Any, *, exclude: Iterable[str] = ()) -> list[Route]:
    """The HTTP routes of a Starlette app (or anything with ``.routes``), HEAD left out."""
    from starlette.routing import Route as StarletteRoute

    skipped = set(exclude)
    found = []
    for route in getattr(app, "routes", ()):
        if not isinstance(route, StarletteRoute) or route.path in skipped:
            continue
        for method in sorted(route.methods or ("GET",)):
            if method.lower() in METHODS:
                found.append(Route(method, route.path))
    return found


def merge(
    configured: Sequence[Route], discovered: Sequence[Route], exclude: Iterable[str] = ()
) -> list[Route]:
    """The discovered routes in their order, each replaced by its configured entry if
    there is one, then configured routes the document does not list; excluded paths go."""
    skipped = set(exclude)
    mine = {r.key: r for r in configured}
    merged = [mine.pop(r.key, r) for r in discovered]
    merged += list(mine.values())
    return [r for r in merged if r.path not in skipped]


def _example(operation: Mapping[str, Any]) -> Any:
    body = operation.get("requestBody")
    if not isinstance(body, Mapping):
        return None
    media = body.get("content", {}).get("application/json")
    if not isinstance(media, Mapping):
        return None
    if "example" in media:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, Mapping) and examples:
        first = next(iter(examples.values()))
        if isinstance(first, Mapping):
            return first.get("value")
    return {}
