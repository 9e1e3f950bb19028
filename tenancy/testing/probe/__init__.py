"""The HTTP isolation probe: N tenants x M identities x every route, attacked.

``tenancy probe --target URL --config probe.toml`` from the command line, or in-process::

    report = await run_probe(load_config("probe.toml"), app=my_asgi_app)
    assert not report.leaks

See :mod:`tenancy.testing.probe.runner` for the phases of a run, and
:mod:`tenancy.testing.probe.attacks` for what is sent and how cells are classified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tenancy.errors import ProbeConfigError
from tenancy.testing.probe.config import (
    GrantState,
    Identity,
    ProbeConfig,
    Route,
    TokenSource,
    load_config,
    parse_config,
)
from tenancy.testing.probe.report import Attack, Cell, Control, Outcome, ProbeReport
from tenancy.testing.probe.routes import (
    load_openapi,
    read_openapi_file,
    routes_from_app,
    routes_from_openapi,
)
from tenancy.testing.probe.runner import Probe

__all__ = [
    "Attack",
    "Cell",
    "Control",
    "GrantState",
    "Identity",
    "Outcome",
    "Probe",
    "ProbeConfig",
    "ProbeConfigError",
    "ProbeReport",
    "Route",
    "TokenSource",
    "load_config",
    "load_openapi",
    "parse_config",
    "read_openapi_file",
    "routes_from_app",
    "routes_from_openapi",
    "run_probe",
]


async def run_probe(
    config: ProbeConfig,
    *,
    target: str | None = None,
    app: Any = None,
    discovered: Sequence[Route] = (),
) -> ProbeReport:
    """Probe a running service at ``target`` (default: the config's), or an ASGI ``app``
    in-process. Routes come from the config, ``discovered``, and the config's OpenAPI
    document (fetched from the target when it names a path or URL)."""
    if app is not None:
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)
        base = target or "http://probe.invalid"
    else:
        base = target or config.target or ""
        if not base.startswith(("http://", "https://")):
            raise ProbeConfigError("give the target as an http(s) URL (--target or target =)")
        transport = httpx.AsyncHTTPTransport(retries=0)
    async with httpx.AsyncClient(
        base_url=base, transport=transport, timeout=config.timeout, follow_redirects=False
    ) as client:
        routes = list(discovered)
        if config.openapi is not None:
            routes += await _openapi_routes(client, config.openapi)
        probe = Probe(config, discovered=routes)
        return await probe.run(client)


async def _openapi_routes(client: httpx.AsyncClient, where: str) -> list[Route]:
    if not where.startswith(("/", "http://", "https://")):
        return read_openapi_file(where)
    try:
        response = await client.get(where)
    except httpx.HTTPError as exc:
        raise ProbeConfigError(f"cannot fetch the OpenAPI document {where}: {exc}") from exc
    if not response.is_success:
        raise ProbeConfigError(f"the OpenAPI document {where} answered {response.status_code}")
    return load_openapi(response.text, where=where)
