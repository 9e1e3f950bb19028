"""The probe's configuration as values: identities, routes, captures, the issuer key.

Kept apart from the parsing (``config.py``) so that the runner, the attacks and the report
depend on what a configuration *is*, not on how ``probe.toml`` is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

ROUTE_KEY = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")
PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}")
SUPPORT_TARGET_HEADER = "x-support-target"
# What os.path.expandvars expands: $NAME and ${NAME}.


class GrantState(StrEnum):
    """What a support identity's grant is for the tenant it names."""

    NONE = "none"
    EXPIRED = "expired"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class TokenSource:
    """How to obtain one identity's bearer token: exactly one of the four."""

    value: str | None = None
    file: Path | None = None
    command: tuple[str, ...] | None = None
    dev_issuer: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """One caller the probe acts as: a tenant's user, or support staff (with the grant
    state it is expected to have), and where its token comes from."""

    name: str
    tenant: str | None
    token: TokenSource
    support: bool = False
    grant: GrantState = GrantState.NONE


@dataclass(frozen=True, slots=True)
class Capture:
    """A path parameter taken from a seed's response: a JSON field, or a header with
    ``header:<name>``; ``pattern`` keeps its first group."""

    param: str
    source: str
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """One route to probe: which requests seed data, the body to send, and what to
    capture from the answer (an object id, a link token) for the attacks."""

    method: str
    path: str
    body: Any = None
    seed: bool = False
    captures: tuple[Capture, ...] = ()

    @property
    def key(self) -> str:
        """``"METHOD /path"``, as reports and the config name the route."""
        return f"{self.method} {self.path}"

    @property
    def params(self) -> tuple[str, ...]:
        """The path's ``{parameters}``, in order (filled from captured objects)."""
        return tuple(PATH_PARAM.findall(self.path))

    @property
    def mutating(self) -> bool:
        """Whether a request may change data (anything but GET): its attacks are checked
        against the victim's data afterwards, not only by status."""
        return self.method != "GET"


@dataclass(frozen=True, slots=True)
class Issuer:
    """The identity provider's signing key (test environments only), so the probe can
    show that expired tokens and tokens for another audience are refused."""

    private_key: Path | None = None
    dev_data_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """A whole probe run: the identities, the routes, the target and the issuer key used
    to forge tampered tokens (parsed from ``probe.toml`` by ``load_config``)."""

    identities: tuple[Identity, ...]
    routes: tuple[Route, ...] = ()
    target: str | None = None
    openapi: str | None = None
    exclude: tuple[str, ...] = ()
    issuer: Issuer | None = None
    support_header: str = SUPPORT_TARGET_HEADER
    timeout: float = 10.0
    concurrency: int = 8
    tenant_ids: Mapping[str, str] = field(default_factory=dict)

    @property
    def users(self) -> tuple[Identity, ...]:
        """The tenants' own identities (not support staff)."""
        return tuple(i for i in self.identities if not i.support)

    @property
    def staff(self) -> tuple[Identity, ...]:
        """The support engineers (with no grant, an expired one or an active one)."""
        return tuple(i for i in self.identities if i.support)

    @property
    def tenants(self) -> tuple[str, ...]:
        """Every tenant some user belongs to, in the order the config names them."""
        return tuple(dict.fromkeys(i.tenant for i in self.users if i.tenant))
