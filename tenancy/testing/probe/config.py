"""What the probe is told: tenants, identities, how to get their tokens, and the routes.

A ``probe.toml`` (see ``examples/probe/demo.toml``)::

    target = "http://127.0.0.1:8000"
    openapi = "/openapi.json"          # optional: routes from the service's document
                                        # (a path or URL on the target, or a file)
    exclude = ["/healthz"]              # paths never probed (public routes)

    [issuer]                            # optional: re-signs tokens expired / for another
    dev_data_dir = ".tenancy"      # audience; or private_key = "issuer.pem"

    [[identities]]
    name = "acme-admin"
    tenant = "acme"
    token = { command = ["tenancy", "dev-token", "--tenant", "acme", "--sub", "alice"] }

    [[support]]                         # support staff, and the grant each one holds
    name = "staff-expired"
    grant = "expired"                   # none | expired | active
    tenant = "acme"                     # the tenant of that grant
    token = { file = "tokens/staff-expired.jwt" }

    [routes."POST /worklogs"]
    body = { description = "{canary}", minutes = 5, day = "2026-11-21" }
    seed = true                         # create data with it, as every identity
    capture = { id = "id" }             # path parameter <- response field

``$VAR`` and ``${VAR}`` in paths (token files, the issuer's key or data directory, an
``openapi`` file) and in commands are expanded from the environment. Which folder a
relative path is relative to depends on who wrote it:

- a path **written in the file** (``"tokens/a.jwt"``, ``"tokens/$WHO.jwt"``) is relative
  to the file's folder, so a configuration can ship beside its token files;
- a path that **begins with a variable** (``"${TENANCY_DATA_DIR}"``,
  ``"$KEYS/issuer.pem"``) came from the environment, and a relative value there is
  relative to the **working directory**, like every other path typed in that shell (and
  like the token commands, which run there and read the same variable);
- absolute paths are used as they are; paths given on the command line (``--config``,
  ``--out``) are the working directory's, as always.

A variable that is not set, in a path, is a :class:`ProbeConfigError` (left unexpanded it
would name a folder called ``${VAR}``); in a command it is passed on unexpanded. A
command is looked up on ``PATH``, then beside the running interpreter (a virtualenv's
``bin``). Every problem is a :class:`ProbeConfigError` naming the key, raised before any
request.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenancy.errors import ProbeConfigError
from tenancy.testing.probe.model import (
    PATH_PARAM,
    ROUTE_KEY,
    SUPPORT_TARGET_HEADER,
    Capture,
    GrantState,
    Identity,
    Issuer,
    ProbeConfig,
    Route,
    TokenSource,
)

__all__ = [
    "PATH_PARAM",
    "ROUTE_KEY",
    "SUPPORT_TARGET_HEADER",
    "Capture",
    "GrantState",
    "Identity",
    "Issuer",
    "ProbeConfig",
    "Route",
    "TokenSource",
    "load_config",
    "parse_config",
    "route_entry",
]

_VARIABLE = re.compile(r"\$(?:(\w+)|\{([^}]*)\})")


def load_config(path: str | Path) -> ProbeConfig:
    """Read and check a ``probe.toml``.

    A relative path written in the file is relative to the file's folder; one that begins
    with ``$VAR`` is relative to the working directory (see the module's docstring).
    """
    source = Path(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProbeConfigError(f"cannot read {source}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProbeConfigError(f"{source} is not valid TOML: {exc}") from exc
    return parse_config(raw, base=source.parent)


def parse_config(raw: Mapping[str, Any], *, base: Path = Path(".")) -> ProbeConfig:
    """Build a :class:`ProbeConfig` from parsed TOML (or an equivalent dict)."""
    known = {
        "target",
        "openapi",
        "exclude",
        "issuer",
        "identities",
        "support",
        "routes",
        "support_header",
        "timeout",
        "concurrency",
        "tenant_ids",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProbeConfigError(f"unknown key(s): {', '.join(unknown)}")
    users = [
        _identity(entry, f"identities[{n}]", base, support=False)
        for n, entry in enumerate(_list(raw, "identities"))
    ]
    staff = [
        _identity(entry, f"support[{n}]", base, support=True)
        for n, entry in enumerate(_list(raw, "support"))
    ]
    identities = (*users, *staff)
    names = [i.name for i in identities]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ProbeConfigError(f"identity name {duplicate!r} is used twice")
    tenants = {i.tenant for i in users}
    if len(tenants) < 2:
        raise ProbeConfigError("identities must cover at least two tenants")
    for person in staff:
        if person.grant is not GrantState.NONE and person.tenant not in tenants:
            raise ProbeConfigError(
                f"support identity {person.name!r}: its grant's tenant "
                f"must be one of the identities' tenants"
            )
    routes = raw.get("routes", {})
    if not isinstance(routes, Mapping):
        raise ProbeConfigError('routes must be a table of "METHOD /path" entries')
    if not routes and not raw.get("openapi"):
        raise ProbeConfigError("give the routes, or an openapi document to read them from")
    timeout = raw.get("timeout", 10.0)
    concurrency = raw.get("concurrency", 8)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ProbeConfigError("timeout must be a number of seconds in (0, 300]")
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
        raise ProbeConfigError("concurrency must be an integer from 1 to 64")
    tenant_ids = raw.get("tenant_ids", {})
    if not isinstance(tenant_ids, Mapping) or not all(
        isinstance(v, str) for v in tenant_ids.values()
    ):
        raise ProbeConfigError("tenant_ids must map tenant names to ids")
    return ProbeConfig(
        identities=identities,
        routes=tuple(route_entry(key, value) for key, value in routes.items()),
        target=_optional_str(raw, "target"),
        openapi=_openapi(_optional_str(raw, "openapi"), base),
        exclude=tuple(_strings(raw.get("exclude", []), "exclude")),
        issuer=_issuer(raw.get("issuer"), base),
        support_header=_optional_str(raw, "support_header") or SUPPORT_TARGET_HEADER,
        timeout=float(timeout),
        concurrency=concurrency,
        tenant_ids=dict(tenant_ids),
    )


def route_entry(key: str, value: Any) -> Route:
    """One ``[routes."METHOD /path"]`` table."""
    match = ROUTE_KEY.match(key)
    if match is None:
        raise ProbeConfigError(f'route {key!r} must look like "GET /path/{{id}}"')
    if not isinstance(value, Mapping):
        raise ProbeConfigError(f"route {key!r} must be a table")
    unknown = sorted(set(value) - {"body", "seed", "capture"})
    if unknown:
        raise ProbeConfigError(f"route {key!r}: unknown key(s) {', '.join(unknown)}")
    captures = []
    for param, spec in dict(value.get("capture", {})).items():
        if isinstance(spec, str):
            captures.append(Capture(param, spec))
        elif isinstance(spec, Mapping) and isinstance(spec.get("from"), str):
            try:
                pattern = re.compile(spec["pattern"]) if "pattern" in spec else None
            except (re.error, TypeError) as exc:
                raise ProbeConfigError(
                    f"route {key!r}: capture {param!r} has a bad pattern: {exc}"
                ) from exc
            if pattern is not None and pattern.groups < 1:
                raise ProbeConfigError(
                    f"route {key!r}: capture {param!r}: the pattern needs a group"
                )
            captures.append(Capture(param, spec["from"], pattern))
        else:
            raise ProbeConfigError(
                f"route {key!r}: capture {param!r} must be a field "
                "name or {from = ..., pattern = ...}"
            )
    seed = value.get("seed", False)
    if not isinstance(seed, bool):
        raise ProbeConfigError(f"route {key!r}: seed must be true or false")
    if captures and not seed:
        raise ProbeConfigError(f"route {key!r}: only seed routes capture parameters")
    return Route(match.group(1), match.group(2), value.get("body"), seed, tuple(captures))


def _identity(entry: Any, where: str, base: Path, *, support: bool) -> Identity:
    if not isinstance(entry, Mapping):
        raise ProbeConfigError(f"{where} must be a table")
    allowed = {"name", "tenant", "token"} | ({"grant"} if support else set())
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ProbeConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ProbeConfigError(f"{where}: name must be 1-64 letters, digits, '.', '_', '-'")
    tenant = entry.get("tenant")
    grant = GrantState.NONE
    if support:
        try:
            grant = GrantState(entry.get("grant", "none"))
        except ValueError as exc:
            raise ProbeConfigError(f"{where}: grant must be none, expired or active") from exc
        if (grant is GrantState.NONE) != (tenant is None):
            raise ProbeConfigError(f"{where}: name the tenant of the grant (and only then)")
    elif not isinstance(tenant, str) or not tenant:
        raise ProbeConfigError(f"{where}: tenant is required")
    if tenant is not None and not isinstance(tenant, str):
        raise ProbeConfigError(f"{where}: tenant must be a string")
    return Identity(
        name, tenant, _token_source(entry.get("token"), f"{where}.token", base), support, grant
    )


def _token_source(spec: Any, where: str, base: Path) -> TokenSource:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ProbeConfigError(f"{where} must have exactly one of value, file, command, dev_issuer")
    ((kind, value),) = spec.items()
    if kind == "value" and isinstance(value, str) and value:
        return TokenSource(value=value)
    if kind == "file" and isinstance(value, str) and value:
        return TokenSource(file=_path(value, base, where))
    if kind == "command":
        parts = [value] if isinstance(value, str) else value
        if isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts):
            return TokenSource(command=tuple(os.path.expandvars(p) for p in parts))
    if kind == "dev_issuer" and isinstance(value, Mapping):
        return TokenSource(dev_issuer=dict(value))
    raise ProbeConfigError(f"{where}: {kind!r} is not a usable token source")


def _issuer(spec: Any, base: Path) -> Issuer | None:
    if spec is None:
        return None
    if (
        not isinstance(spec, Mapping)
        or len(spec) != 1
        or not isinstance(next(iter(spec.values())), str)
    ):
        raise ProbeConfigError("issuer must have one of private_key or dev_data_dir")
    ((kind, value),) = spec.items()
    if kind == "private_key":
        return Issuer(private_key=_path(value, base, "issuer.private_key"))
    if kind == "dev_data_dir":
        return Issuer(dev_data_dir=_path(value, base, "issuer.dev_data_dir"))
    raise ProbeConfigError(f"issuer: unknown key {kind!r}")


def _openapi(value: str | None, base: Path) -> str | None:
    """A path or URL on the target stays as given; anything else is a file (see
    :func:`_path` for which folder it is relative to)."""
    if value is None or value.startswith(("/", "http://", "https://")):
        return value
    return str(_path(value, base, "openapi"))


def _path(value: str, base: Path, where: str) -> Path:
    """``value`` with its variables expanded: relative to ``base`` (the file's folder) when
    written in the file, to the working directory when it begins with a variable."""
    for match in _VARIABLE.finditer(value):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise ProbeConfigError(f"{where}: ${name} is not set")
    path = Path(os.path.expandvars(value))
    if path.is_absolute() or _VARIABLE.match(value):
        return path
    return base / path


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ProbeConfigError(f"{key} must be an array of tables ([[{key}]])")
    return value


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ProbeConfigError(f"{key} must be a non-empty string")
    return value


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProbeConfigError(f"{key} must be an array of strings")
    return value
