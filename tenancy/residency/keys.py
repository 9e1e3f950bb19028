"""CMK residency: a tenant's key-encryption key lives in the tenant's home region.

Where a key lives comes from its provider's ``KeyInfo.location``: AWS KMS says
``aws-kms:<region>``; a PKCS#11 token (``pkcs11:<label>``) or a local key file (its
path) says nothing about geography, so their region is what the operator configured
for that HSM or key file (``configured_region``, or ``KeyResidency(locations=...)``).
A key whose region cannot be told is refused, never assumed to be fine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.errors import ConfigurationError, InvalidTenantField
from tenancy.events import EventSink, LoggingSink
from tenancy.keys.provider import KeyInfo, KeyProvider, KeyRef
from tenancy.residency.audit import refuse
from tenancy.tenants.model import validate_region

AWS_KMS_PREFIX = "aws-kms:"
ATTEMPTED = "key"


def key_region(key_info: KeyInfo, *, configured_region: str | None = None) -> str | None:
    """The region ``key_info``'s key lives in, or ``None`` when it cannot be told.

    ``aws-kms:<region>`` names its region; any other location (PKCS#11 token, key file)
    is in ``configured_region``. A KMS location and a configured region that disagree
    cannot both be right: ``None``.
    """
    location = key_info.location
    if location.startswith(AWS_KMS_PREFIX):
        stated = _valid(location[len(AWS_KMS_PREFIX) :])
        if stated is None or (configured_region is not None and configured_region != stated):
            return None
        return stated
    return None if configured_region is None else _valid(configured_region)


def check_key_region(
    key_info: KeyInfo,
    tenant_region: str,
    *,
    configured_region: str | None = None,
    tenant_id: str | None = None,
    events: EventSink | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> str:
    """Refuse a tenant's key that does not live in the tenant's home region.

    Returns the key's region (= ``tenant_region``) when it is accepted.

    Raises:
        ResidencyViolation: the key lives in another region, or where it lives cannot
            be told (a PKCS#11 or local key without a configured region); a
            ``residency.refused`` event names the tenant, both regions and the key.
    """
    found = key_region(key_info, configured_region=configured_region)
    if found is not None and found == tenant_region:
        return found
    reason = (
        "the tenant's key lives in another region than the tenant"
        if found is not None
        else "the region of the tenant's key is not known"
    )
    refuse(
        events if events is not None else LoggingSink(),
        reason=reason,
        tenant_id=tenant_id,
        home_region=tenant_region,
        region=found,
        attempted=ATTEMPTED,
        clock=clock,
        provider=key_info.ref.provider,
        key_id=key_info.ref.key_id,
        location=key_info.location,
    )


class KeyResidency:
    """The CMK rule as ``TenantKeys`` applies it: the tenant's region comes from
    ``tenant_region`` (e.g. ``lambda tid: registry.get(tid).region``), the region of a
    PKCS#11 token or key file from ``locations`` (by ``KeyInfo.location`` first, then
    by provider name).

    Raises:
        ConfigurationError: a configured region is malformed.
    """

    def __init__(
        self,
        tenant_region: Callable[[str], str],
        *,
        locations: Mapping[str, str] | None = None,
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._tenant_region = tenant_region
        self._locations: dict[str, str] = {}
        for where, region in (locations or {}).items():
            checked = _valid(region)
            if checked is None:
                raise ConfigurationError(f"the region configured for {where!r} is malformed")
            self._locations[where] = checked
        self._events = events if events is not None else LoggingSink()
        self._clock = clock

    def check(self, tenant_id: str, key_info: KeyInfo) -> str:
        """:func:`check_key_region` for ``tenant_id``'s home region."""
        configured = self._locations.get(key_info.location) or self._locations.get(
            key_info.ref.provider
        )
        return check_key_region(
            key_info,
            self._tenant_region(tenant_id),
            configured_region=configured,
            tenant_id=tenant_id,
            events=self._events,
            clock=self._clock,
        )

    def check_ref(self, tenant_id: str, provider: KeyProvider, key: KeyRef) -> str:
        """Describe ``key`` in ``provider`` and check it (one provider call)."""
        return self.check(tenant_id, provider.describe(key))


def _valid(region: str) -> str | None:
    try:
        return validate_region(region)
    except InvalidTenantField:
        return None
