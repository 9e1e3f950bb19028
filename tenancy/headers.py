"""Header hygiene: names and list members that claim a tenant are never trusted.

The tenant comes from verified credentials only (invariant 1). A header such as
``X-Tenant-ID`` or a W3C ``baggage`` member ``tenant=globex`` is a caller's say-so, so
the middleware drops them on the way in and :class:`tenancy.propagation.ContextAuth`
drops them on the way out, before another service can be tempted by them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

MEMBER_LIST_HEADERS = frozenset({b"baggage", b"tracestate"})


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


def scrub(headers: Iterable[tuple[bytes, bytes]],
          extra: Collection[bytes] = ()) -> list[tuple[bytes, bytes]]:
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
