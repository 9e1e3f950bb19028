"""Tenants as values: identity, home region, lifecycle status and its allowed moves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tenancy.errors import (
    InvalidTenantField,
    InvalidTransition,
    TenantOffboarded,
    TenantSuspended,
    WrongRegion,
)

SLUG_PATTERN = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")
REGION_PATTERN = re.compile(r"^[a-z]{2,8}(?:-[a-z0-9]{1,16}){1,3}$")
RESERVED_SLUGS = frozenset({"admin", "api", "system", "support", "platform", "www", "root"})
MAX_DISPLAY_NAME = 120


class TenantStatus(StrEnum):
    """Lifecycle: ``active`` ⇄ ``suspended`` → ``offboarded`` (terminal)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDED = "offboarded"


ALLOWED_TRANSITIONS: dict[TenantStatus, frozenset[TenantStatus]] = {
    TenantStatus.ACTIVE: frozenset({TenantStatus.SUSPENDED, TenantStatus.OFFBOARDED}),
    TenantStatus.SUSPENDED: frozenset({TenantStatus.ACTIVE, TenantStatus.OFFBOARDED}),
    TenantStatus.OFFBOARDED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Tenant:
    """A customer of the platform. ``id`` is the UUID carried in tokens as ``tid``."""

    id: str
    slug: str
    display_name: str
    region: str
    status: TenantStatus
    created_at: datetime
    updated_at: datetime

    def ensure_servable(self, *, region: str) -> None:
        """Refuse to serve a tenant that is not active or is homed in another region.

        Raises:
            TenantSuspended, TenantOffboarded: the tenant is not active.
            WrongRegion: the tenant's home region is not ``region``.
        """
        if self.status is TenantStatus.SUSPENDED:
            raise TenantSuspended("tenant is suspended")
        if self.status is TenantStatus.OFFBOARDED:
            raise TenantOffboarded("tenant is offboarded")
        if self.region != region:
            raise WrongRegion(
                "tenant is homed in another region",
                tenant_id=self.id,
                home_region=self.region,
                region=region,
            )


def check_transition(current: TenantStatus, target: TenantStatus) -> None:
    """Refuse a lifecycle move that ``ALLOWED_TRANSITIONS`` does not list: nothing leaves
    ``offboarded``, and moving to the current status is refused too.

    Raises:
        InvalidTransition: the move is not allowed.
    """
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(f"cannot move a tenant from {current.value} to {target.value}")


def validate_slug(slug: str) -> str:
    """``slug`` if it is 1-32 characters of a-z, 0-9 and ``-``, starts with a letter, does
    not end with ``-`` and is not reserved (``admin``, ``api``, ``support``, ...).

    Raises:
        InvalidTenantField: it is not.
    """
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise InvalidTenantField(
            "slug must be 1-32 characters of a-z, 0-9 and '-', starting with a letter "
            "and not ending with '-'"
        )
    if slug in RESERVED_SLUGS:
        raise InvalidTenantField(f"slug {slug!r} is reserved")
    return slug


def validate_region(region: str) -> str:
    """``region`` if it is shaped like a cloud region (``eu-central-1``). Only the shape is
    checked, not that the region exists.

    Raises:
        InvalidTenantField: it is not.
    """
    if not isinstance(region, str) or not REGION_PATTERN.fullmatch(region):
        raise InvalidTenantField("region must look like 'eu-central-1'")
    return region


def validate_display_name(name: str) -> str:
    """``name`` with runs of whitespace collapsed to one space and the ends trimmed.

    Raises:
        InvalidTenantField: not a string, empty after cleaning, longer than 120 characters,
            or holding non-printable characters.
    """
    if not isinstance(name, str):
        raise InvalidTenantField("display name must be a string")
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_DISPLAY_NAME or not cleaned.isprintable():
        raise InvalidTenantField(f"display name must be 1-{MAX_DISPLAY_NAME} printable characters")
    return cleaned
