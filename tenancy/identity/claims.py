"""Turn verified JWT claims into a ``Principal``. Pure functions, no I/O.

Text that becomes part of a principal (``sub``, ``roles``, ``scope``; ``tid`` is a
canonical UUID) holds no control character (Unicode category Cc) and no lone surrogate:
a signed token can carry ``"member\\u0000x"``, which some policy engines read as
``member`` and others do not, and which no log or header should ever see.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.errors import InvalidToken

TENANT_CLAIM = "tid"
KIND_CLAIM = "kind"
DEVICE_CLAIM = "trusted_device"
MAX_SUBJECT_LENGTH = 255

# RFC 8176 methods that prove possession of a hardware-bound key.
_PHISHING_RESISTANT = frozenset({"hwk", "sc"})

# Category Cc is exactly these two ranges; U+D800-U+DFFF can only be lone surrogates in
# a str decoded from JSON.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def refuse_control_characters(value: str, *, claim: str) -> str:
    """``value`` if it holds no control character and no lone surrogate.

    Raises:
        InvalidToken: it does; ``reason`` names the claim, never the value.
    """
    if _CONTROL_OR_SURROGATE.search(value):
        raise InvalidToken(f"{claim} claim holds a control character or lone surrogate")
    return value


def tenant_id_from(claims: Mapping[str, Any]) -> str:
    """The ``tid`` claim as a canonical UUID string."""
    tid = claims.get(TENANT_CLAIM)
    if not isinstance(tid, str):
        raise InvalidToken("tid claim missing or not a string")
    try:
        canonical = str(uuid.UUID(tid))
    except ValueError as exc:
        raise InvalidToken("tid claim is not a UUID") from exc
    if canonical != tid:
        raise InvalidToken("tid claim is not a canonical lowercase UUID")
    return canonical


def assurance_from(amr: Any) -> Assurance:
    """MFA assurance from ``amr``: ``mfa`` means several factors; with ``hwk``/``sc``
    one of them was a hardware-bound key."""
    methods = frozenset(_strings(amr, "amr"))
    if "mfa" not in methods:
        return Assurance.SINGLE_FACTOR
    if methods & _PHISHING_RESISTANT:
        return Assurance.PHISHING_RESISTANT
    return Assurance.MULTI_FACTOR


def principal_from(
    claims: Mapping[str, Any], *, issuer: str, kinds: Collection[PrincipalKind]
) -> Principal:
    """Build the principal; refuse claims of the wrong shape or a kind the issuer may
    not assert."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidToken("sub claim missing or invalid")
    refuse_control_characters(subject, claim="sub")
    raw_kind = claims.get(KIND_CLAIM, PrincipalKind.USER.value)
    try:
        kind = PrincipalKind(raw_kind)
    except ValueError as exc:
        raise InvalidToken("kind claim is not a known principal kind") from exc
    if kind not in kinds:
        raise InvalidToken(f"issuer may not assert principals of kind {kind.value!r}")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("scope claim must be a space-delimited string")
    refuse_control_characters(scope, claim="scope")
    roles = _strings(claims.get("roles"), "roles")
    for role in roles:
        refuse_control_characters(role, claim="roles")
    return Principal(
        issuer=issuer,
        tenant_id=tenant_id_from(claims),
        subject=subject,
        kind=kind,
        roles=frozenset(roles),
        scopes=frozenset(scope.split()),
        assurance=assurance_from(claims.get("amr")),
        device_trusted=claims.get(DEVICE_CLAIM) is True,
    )


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidToken(f"{name} claim must be a list of strings")
    return value
