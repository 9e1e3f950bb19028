"""One place that refuses on residency grounds: it emits the event, then raises."""

from __future__ import annotations

from typing import NoReturn

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import current_or_none
from tenancy.errors import ResidencyViolation
from tenancy.events import EventSink, SecurityEvent

REFUSED = "residency.refused"


def refuse(
    events: EventSink,
    *,
    reason: str,
    tenant_id: str | None,
    home_region: str | None,
    region: str | None,
    attempted: str,
    clock: Clock = SYSTEM_CLOCK,
    **details: str,
) -> NoReturn:
    """Emit ``residency.refused`` (tenant, home region, this region, what was attempted)
    and raise the matching :class:`ResidencyViolation`."""
    ctx = current_or_none()
    info = {
        "home_region": home_region or "",
        "region": region or "",
        "attempted": attempted,
        **details,
    }
    if ctx is not None and ctx.support_grant_id is not None:
        info["support_grant_id"] = ctx.support_grant_id
    events.emit(
        SecurityEvent(
            action=REFUSED,
            at=clock.now(),
            tenant_id=tenant_id,
            actor=None if ctx is None else ctx.principal.subject,
            reason=reason,
            request_id=None if ctx is None else ctx.request_id,
            details=info,
        )
    )
    raise ResidencyViolation(
        reason, tenant_id=tenant_id, home_region=home_region, region=region, attempted=attempted
    )
