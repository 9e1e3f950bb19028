"""The claim checks of :mod:`tenancy.propagation.verify`, on a payload already verified.

They live apart from the verifier so that it stays about the order of the checks (size,
header, key, signature, then these, then replay) while the per-claim rules, the same
hygiene as at the edge, can be read on their own. Nothing here checks a signature: every
function takes claims that PyJWT has already verified.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.errors import InvalidToken
from tenancy.identity.claims import refuse_control_characters, tenant_id_from
from tenancy.propagation.tokens import body_digest
from tenancy.tenants.model import validate_region

if TYPE_CHECKING:  # annotations only: verify imports this module
    from tenancy.propagation.verify import TrustedService

_KINDS = {kind.value: kind for kind in PrincipalKind}
_ASSURANCES = {int(level): level for level in Assurance}
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def claims_object(payload: bytes) -> dict[str, Any]:
    """The verified payload as a JSON object (as PyJWT's ``jwt.decode`` returns it)."""
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise InvalidToken(f"context token payload is not JSON: {exc}") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("context token payload is not a JSON object")
    return claims


def principal_from(claims: Mapping[str, Any], service: TrustedService) -> Principal:
    """The principal the claims name, within what ``service`` may delegate and forward."""
    scope = string_claim(claims, "scope", 4096, allow_empty=True)
    scopes = frozenset(scope.split())
    if not scopes <= service.scopes:
        raise InvalidToken(
            f"context token carries scopes beyond what {service.name!r} "
            f"may delegate: {sorted(scopes - service.scopes)}"
        )
    aal = claims["aal"]
    # Lookups in the enums' own value tables (bools and floats never match an int aal).
    kind = _KINDS.get(claims["kind"]) if isinstance(claims["kind"], str) else None
    assurance = _ASSURANCES.get(aal) if type(aal) is int else None
    if kind is None or assurance is None:
        raise InvalidToken("kind or aal claim invalid")
    if kind not in service.kinds:
        raise InvalidToken(f"{service.name!r} may not forward principals of kind {kind.value!r}")
    roles = claims["roles"]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("roles claim must be a list of strings")
    # The same claim hygiene as at the edge: no control character, no lone surrogate.
    refuse_control_characters(scope, claim="scope")
    for role in roles:
        refuse_control_characters(role, claim="roles")
    return Principal(
        issuer=refuse_control_characters(string_claim(claims, "piss", 512), claim="piss"),
        tenant_id=_tenant_id(claims),
        subject=refuse_control_characters(string_claim(claims, "sub", 255), claim="sub"),
        kind=kind,
        roles=frozenset(roles),
        scopes=scopes,
        assurance=assurance,
        device_trusted=claims.get("dvt") is True,
    )


def _tenant_id(claims: Mapping[str, Any]) -> str:
    """``tid`` as :func:`tenant_id_from` accepts it (a canonical lowercase UUID, the only
    form that equals ``str(UUID(tid))``), matched without building a UUID; anything else
    goes to ``tenant_id_from`` for its refusal."""
    tid = claims.get("tid")
    if isinstance(tid, str) and _CANONICAL_UUID.fullmatch(tid):
        return tid
    return tenant_id_from(claims)


def check_body(claims: Mapping[str, Any], body: bytes | None) -> None:
    """Refuse a message token without its body, or a body its ``bdy`` does not match."""
    bound = claims.get("bdy")
    if body is None:
        if bound is not None:
            raise InvalidToken("message token used without its message body")
        return
    if not isinstance(bound, str):
        raise InvalidToken("message token is not bound to a body")
    if not hmac.compare_digest(bound, body_digest(body)):
        raise InvalidToken("message body does not match its token")


def region_claim(claims: Mapping[str, Any]) -> str:
    """The ``region`` claim, a well-formed region name."""
    try:
        return validate_region(string_claim(claims, "region", 64))
    except ValueError as exc:
        raise InvalidToken("region claim invalid") from exc


def string_claim(
    claims: Mapping[str, Any], name: str, limit: int, *, allow_empty: bool = False
) -> str:
    """The claim ``name``: a string of at most ``limit`` characters, empty only if allowed."""
    value = claims.get(name)
    if not isinstance(value, str) or len(value) > limit or not (value or allow_empty):
        raise InvalidToken(f"{name} claim missing or invalid")
    return value
