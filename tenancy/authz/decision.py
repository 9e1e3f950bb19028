"""What a policy decision point answers, and the facts it is asked about.

A :class:`Decision` is never a bare boolean: it names its reasons, the scopes the action
needed, until when it holds, and the policy revision it came from. Anything an engine
returns that is not exactly that shape is refused (``DecisionUnavailable``), so an
undefined or malformed answer can only ever deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenancy.context import TenantContext
from tenancy.errors import AccessDenied, DecisionUnavailable

MAX_REASONS = 32


@dataclass(frozen=True, slots=True)
class Action:
    """What is being done: an HTTP route (method + template) or a named action."""

    method: str | None = None
    route: str | None = None
    name: str | None = None

    @classmethod
    def http(cls, method: str, route: str) -> Action:
        """The action of serving ``method`` on ``route``, the route *template*
        (``/notes/{id}``), not the concrete path, so that policies and the decision cache
        see one action per route."""
        return cls(method=method, route=route)

    @classmethod
    def named(cls, name: str) -> Action:
        """A named action, one the policy lists in ``data.tenancy.actions``, for decisions
        that are not about an HTTP route."""
        return cls(name=name)

    def as_input(self) -> dict[str, str]:
        """The ``action`` part of the policy input: ``{"name": ...}`` for a named action,
        else ``{"method": ..., "route": ...}`` (empty strings where unset)."""
        if self.name is not None:
            return {"name": self.name}
        return {"method": self.method or "", "route": self.route or ""}


@dataclass(frozen=True, slots=True)
class Resource:
    """What it is done to; ``tenant_id`` is the owner the policy compares with."""

    tenant_id: str
    type: str | None = None
    id: str | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())

    def as_input(self) -> dict[str, Any]:
        """The ``resource`` part of the policy input; unset fields are left out,
        ``tenant_id`` always present."""
        doc: dict[str, Any] = {"tenant_id": self.tenant_id}
        if self.type is not None:
            doc["type"] = self.type
        if self.id is not None:
            doc["id"] = self.id
        if self.attributes:
            doc["attributes"] = dict(self.attributes)
        return doc


@dataclass(frozen=True, slots=True)
class GrantFacts:
    """What the policy needs to know of a support grant (hashable: part of the cache key)."""

    id: str
    tenant_id: str
    scopes: frozenset[str]
    expires_at: float
    active: bool

    def as_input(self) -> dict[str, Any]:
        """The ``support_grant`` part of the policy input; scopes sorted and ``expires_at``
        in whole seconds, so equal facts give equal input."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "scopes": sorted(self.scopes),
            "expires_at": int(self.expires_at),
            "active": self.active,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer. ``enforce()`` raises unless it allows."""

    allow: bool
    reasons: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    valid_until: float | None = None
    revision: int = 0
    engine: str = ""
    decision_id: str | None = None
    bundle: str | None = None  # the bundle revision: the manifest's, or a content digest

    def enforce(self) -> Decision:
        """Return self if allowed.

        Raises:
            AccessDenied: the policy said no; ``reasons`` says why (for logs only).
        """
        if not self.allow:
            raise AccessDenied(self.reasons)
        return self


def build_input(
    ctx: TenantContext,
    *,
    service: str,
    action: Action,
    now: float,
    tenant_status: str,
    resource: Resource | None = None,
    grant: GrantFacts | None = None,
) -> dict[str, Any]:
    """The policy input for ``ctx`` doing ``action`` (to ``resource``, default: the tenant
    itself) at ``now``. Only verified facts go in; nothing from the request body."""
    principal = ctx.principal
    return {
        "now": int(now),
        "service": service,
        "action": action.as_input(),
        "principal": {
            "issuer": principal.issuer,
            "tenant_id": principal.tenant_id,
            "subject": principal.subject,
            "kind": principal.kind.value,
            "roles": sorted(principal.roles),
            "scopes": sorted(principal.scopes),
            "mfa": principal.mfa,
            "assurance": int(principal.assurance),
            "device_trusted": principal.device_trusted,
            "caller": ctx.caller,
            "support_grant_id": ctx.support_grant_id,
        },
        "tenant": {"id": ctx.tenant_id, "region": ctx.region, "status": tenant_status},
        "resource": (resource or Resource(tenant_id=ctx.tenant_id)).as_input(),
        "support_grant": None if grant is None else grant.as_input(),
    }


def decision_from(
    result: Any, *, revision: int, engine: str, bundle: str | None = None
) -> Decision:
    """Validate an engine's raw ``decision`` document.

    Raises:
        DecisionUnavailable: undefined (``None``), not an object, ``allow`` not a boolean,
            or reasons/scopes/valid_until of the wrong type.
    """
    if result is None:
        raise DecisionUnavailable("policy decision is undefined")
    if not isinstance(result, Mapping):
        raise DecisionUnavailable("policy decision is not an object")
    allow = result.get("allow")
    if not isinstance(allow, bool):
        raise DecisionUnavailable("policy decision has no boolean allow")
    reasons = _strings(result.get("reasons", []), "reasons")
    scopes = _strings(result.get("scopes", []), "scopes")
    valid_until = result.get("valid_until")
    if valid_until is not None and (
        isinstance(valid_until, bool) or not isinstance(valid_until, int | float)
    ):
        raise DecisionUnavailable("policy decision has a malformed valid_until")
    if allow and reasons:
        raise DecisionUnavailable("policy decision allows and gives reasons to deny")
    return Decision(
        allow=allow,
        reasons=tuple(sorted(reasons))[:MAX_REASONS],
        scopes=tuple(sorted(scopes)),
        valid_until=None if valid_until is None else float(valid_until),
        revision=revision,
        engine=engine,
        bundle=bundle,
    )


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(v, str) for v in value
    ):
        raise DecisionUnavailable(f"policy decision has malformed {name}")
    return list(value)
