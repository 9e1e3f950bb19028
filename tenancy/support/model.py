"""Support grants: what a tenant consented to, for whom, for how long. Pure values.

A grant is active from its approval until the earliest of: approval + the approved
duration, the ticket's closure + 24 hours, and revocation. A pending request expires if
nobody decides it. The window counts from approval, never from the request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

TICKET_GRACE = timedelta(hours=24)


class GrantState(StrEnum):
    """Where a request stands. ``APPROVED`` stays the state after the window ends: whether a
    grant is usable is ``Grant.active_at``, never the state alone."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"  # a pending request nobody decided in time


@dataclass(frozen=True, slots=True)
class Grant:
    """One support-access request and, once decided, its grant."""

    id: str
    tenant_id: str
    engineer: str  # the support principal's subject
    engineer_issuer: str
    ticket_id: str
    justification: str
    requested_scopes: frozenset[str]
    requested_duration: timedelta
    requested_at: datetime
    pending_until: datetime
    state: GrantState = GrantState.PENDING
    scopes: frozenset[str] = frozenset()  # what the admin consented to
    duration: timedelta | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    ticket_closed_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    break_glass: bool = False

    def expires_at(self) -> datetime | None:
        """When an approved grant stops working (``None`` unless approved)."""
        if self.state not in (GrantState.APPROVED, GrantState.REVOKED) or self.decided_at is None:
            return None
        assert self.duration is not None
        ends = [self.decided_at + self.duration]
        if self.ticket_closed_at is not None:
            ends.append(self.ticket_closed_at + TICKET_GRACE)
        if self.revoked_at is not None:
            ends.append(self.revoked_at)
        return min(ends)

    def active_at(self, now: datetime) -> bool:
        """Whether the grant gives access at ``now``: approved, and ``now`` lies in
        [approval, ``expires_at()``). Revoked, denied, pending and expired grants never do."""
        expires = self.expires_at()
        return (
            self.state is GrantState.APPROVED
            and expires is not None
            and self.decided_at is not None
            and self.decided_at <= now < expires
        )

    def status_at(self, now: datetime) -> str:
        """What a person should read: pending, active, expired, denied, revoked."""
        if self.state is GrantState.PENDING:
            return "pending" if now < self.pending_until else "expired"
        if self.state is GrantState.APPROVED:
            return "active" if self.active_at(now) else "expired"
        return self.state.value

    def covers(self, scopes: frozenset[str] | set[str]) -> bool:
        """Whether the consented ``scopes`` include every scope asked for (an empty ask is
        covered). Says nothing about time: check ``active_at`` too."""
        return set(scopes) <= self.scopes

    def with_changes(self, **changes: object) -> Grant:
        """A copy with the named fields replaced (the grant is immutable). Checks no
        transition; an unknown field name raises ``TypeError``."""
        return replace(self, **changes)  # type: ignore[arg-type]
