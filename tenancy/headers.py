"""Header hygiene: names and list members that claim a tenant are never trusted.

The tenant comes from verified credentials only (invariant 1). A header such as
``X-Tenant-ID`` or a W3C ``baggage`` member ``tenant=globex`` is a caller's say-so, so
the middleware drops them on the way in and :class:`tenancy.propagation.ContextAuth`
drops them on the way out, before another service can be tempted by them.

Inbound, :class:`InboundHeaders` does that in the same single pass that collects the
``Authorization`` values, because it runs on every request before anything else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from tenancy.errors import InvalidToken, MissingCredentials

MEMBER_LIST_HEADERS = frozenset({b"baggage", b"tracestate"})
RawHeaders = list[tuple[bytes, bytes]]


def normalize(name: bytes) -> bytes:
    """Lowercase, with ``_`` read as ``-`` (proxies and frameworks treat them alike)."""
    return name.lower().replace(b"_", b"-")


def names_tenant(name: bytes, extra: Collection[bytes] = ()) -> bool:
    """Whether a header name claims a tenant: it mentions one, or it is configured."""
    normalized = normalize(name)
    return b"tenant" in normalized or normalized in extra


def without_tenant_members(value: bytes) -> bytes:
    """Drop list members whose key names a tenant (W3C baggage / tracestate)."""
    members = [m for m in value.split(b",") if b"tenant" not in normalize(m.split(b"=", 1)[0])]
    return b",".join(members).strip()


def scrub(
    headers: Iterable[tuple[bytes, bytes]], extra: Collection[bytes] = ()
) -> list[tuple[bytes, bytes]]:
    """The headers without tenant-naming entries and tenant members of member lists."""
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if names_tenant(name, extra):
            continue
        if normalize(name) in MEMBER_LIST_HEADERS:
            value = without_tenant_members(value)
            if not value:
                continue
        kept.append((name, value))
    return kept


class InboundHeaders:
    """Sanitises one request's raw ASGI headers, and finds its bearer token on the way.

    A request's headers are read once, on every request, so this does one pass that both
    drops what names a tenant and collects the ``Authorization`` values (two of them are
    refused, not merged). The common request has nothing to drop: then nothing is copied.

    Args:
        extra: further header names that name a tenant in your deployment.
    """

    __slots__ = ("_extra", "_special")

    def __init__(self, extra: Collection[str] = ()) -> None:
        self._extra = frozenset(normalize(h.encode("latin-1")) for h in extra)
        # Header names that need a closer look; everything else passes untouched.
        self._special = self._extra | MEMBER_LIST_HEADERS | {b"authorization"}

    def sanitize(self, raw: RawHeaders) -> tuple[RawHeaders | None, list[bytes]]:
        """The headers without tenant-naming entries (``None`` if nothing had to go, so
        the hot path copies nothing), and the ``Authorization`` values."""
        headers: RawHeaders | None = None
        authorizations: list[bytes] = []
        special = self._special
        for index, (name, value) in enumerate(raw):
            if name == b"authorization":  # the common case, already lowercase (ASGI)
                authorizations.append(value)
            else:
                low = name.lower()
                if low in special or b"tenant" in low or b"_" in low:
                    kept = self._filtered(low, value, authorizations)
                    if kept is not value:
                        if headers is None:
                            headers = list(raw[:index])  # first change: copy the rest so far
                        if kept is not None:
                            headers.append((name, kept))
                        continue
            if headers is not None:
                headers.append((name, value))
        return headers, authorizations

    def _filtered(self, low: bytes, value: bytes, authorizations: list[bytes]) -> bytes | None:
        """The value to keep for a header that needs a closer look, or ``None`` to drop it."""
        normalized = low.replace(b"_", b"-")
        if b"tenant" in normalized or normalized in self._extra:
            return None
        if normalized in MEMBER_LIST_HEADERS:
            return without_tenant_members(value) or None
        if normalized == b"authorization":
            authorizations.append(value)
        return value


def bearer_token(authorizations: list[bytes]) -> bytes:
    """The one bearer token among a request's ``Authorization`` values.

    Raises:
        MissingCredentials: none, or not a bearer token.
        InvalidToken: more than one ``Authorization`` header (which one would count?).
    """
    if not authorizations:
        raise MissingCredentials("no bearer token")
    if len(authorizations) > 1:
        raise InvalidToken("more than one Authorization header")
    value = authorizations[0]
    if value[:7].lower() != b"bearer ":
        raise MissingCredentials("Authorization is not a bearer token")
    token = value[7:].strip()
    if not token:
        raise MissingCredentials("Authorization is not a bearer token")
    return token


def header_value(headers: RawHeaders, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase), decoded and stripped."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None
