"""Support access: request, consent, grant, expiry, revocation, ticket closure.

Rules, each refused with ``ConsentRefused`` (and tested):

- only a support principal requests, naming tenant, ticket, justification, scopes and a
  duration no longer than ``max_duration``; a pending request expires after
  ``pending_ttl``;
- only an admin *of that tenant*, with MFA, who is not the requester, approves or
  denies; the role is checked at approval time;
- the approval may narrow scopes and duration, never widen them; write scopes are
  granted only when the admin consents to writes explicitly (``allow_write=True``);
- an approved grant is active from approval until the earliest of approval + duration,
  ticket closure + 24 h, and revocation; overlapping grants never cut each other short.

Every step is recorded through :class:`~tenancy.support.grants.SupportGrants`, which this
workflow extends; it is its own module because these are the decisions of people and the
rules they are checked against, apart from the lookups every request makes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import Engine

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal, PrincipalKind
from tenancy.errors import ConfigurationError, ConsentRefused, InvalidRequest
from tenancy.events import EventSink
from tenancy.support.grants import SupportGrants
from tenancy.support.model import Grant, GrantState
from tenancy.support.notify import Notifier

__all__ = ["ADMIN_ROLE", "SupportAccess", "is_write_scope"]

ADMIN_ROLE = "admin"


def is_write_scope(scope: str) -> bool:
    """Scopes that change data; granted only with explicit consent to writes."""
    return not scope.endswith(":read")


class SupportAccess(SupportGrants):
    """The support-access workflow over a :class:`GrantStore`: the consent steps here,
    reading and recording in :class:`~tenancy.support.grants.SupportGrants`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_duration: timedelta = timedelta(hours=8),
        pending_ttl: timedelta = timedelta(days=2),
        admin_role: str = ADMIN_ROLE,
        clock: Clock = SYSTEM_CLOCK,
        events: EventSink | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        if max_duration <= timedelta(0) or pending_ttl <= timedelta(0):
            raise ConfigurationError("max_duration and pending_ttl must be positive")
        super().__init__(engine, clock=clock, events=events, notifier=notifier)
        self.max_duration = max_duration
        self._pending_ttl = pending_ttl
        self._admin_role = admin_role

    @property
    def admin_role(self) -> str:
        """The role that makes a tenant user an admin who decides support access."""
        return self._admin_role

    # -- the workflow ------------------------------------------------------------------

    def request(
        self,
        tenant_id: str,
        engineer: Principal,
        *,
        ticket_id: str,
        justification: str,
        scopes: Collection[str],
        duration: timedelta,
    ) -> Grant:
        """Open a pending request for support access to ``tenant_id``; it expires unless an
        admin of the tenant decides it within ``pending_ttl``. Stored with its trail entry,
        emitted as ``support.requested`` and sent to the tenant's admins. It grants nothing
        by itself.

        Args:
            tenant_id: the tenant whose data the engineer wants to see.
            engineer: the requester; must be a support principal.
            ticket_id: the ticket the access is for; its closure ends the grant.
            justification: why, in words, for the admin and the trail.
            scopes: the scopes asked for (a collection, not one string).
            duration: how long, counted from approval; at most ``max_duration``.

        Raises:
            ConsentRefused: ``engineer`` is not support staff, or ``duration`` is not
                positive or exceeds ``max_duration``.
            InvalidRequest: the ticket id or justification is blank, or no scopes are named.
        """
        if engineer.kind is not PrincipalKind.SUPPORT:
            raise ConsentRefused("only support staff request support access")
        if not ticket_id.strip() or not justification.strip():
            raise InvalidRequest("a ticket id and a justification are required")
        wanted = frozenset(scopes)
        if not wanted or isinstance(scopes, str):
            raise InvalidRequest("name the scopes the ticket needs")
        self._check_duration(duration)
        now = self._clock.now()
        grant = Grant(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            engineer=engineer.subject,
            engineer_issuer=engineer.issuer,
            ticket_id=ticket_id.strip(),
            justification=justification.strip(),
            requested_scopes=wanted,
            requested_duration=duration,
            requested_at=now,
            pending_until=now + self._pending_ttl,
        )
        self._save(
            grant,
            actor=engineer.subject,
            action="requested",
            detail={
                "scopes": sorted(wanted),
                "seconds": duration.total_seconds(),
                "ticket": grant.ticket_id,
            },
        )
        self._notify(
            "requested",
            grant,
            to=f"tenant-admins:{tenant_id}",
            subject=f"Support requests access for ticket {grant.ticket_id}",
        )
        return grant

    def approve(
        self,
        tenant_id: str,
        grant_id: str,
        approver: Principal,
        *,
        duration: timedelta | None = None,
        scopes: Collection[str] | None = None,
        allow_write: bool = False,
    ) -> Grant:
        """An admin of the tenant consents: the pending request becomes an approved grant,
        active from now for ``duration``. The admin may narrow scopes and duration, never
        widen them; without ``allow_write`` write scopes are dropped from what is granted.

        Args:
            duration: the approved window (default: the one requested).
            scopes: the scopes granted, a non-empty subset of those requested (default:
                all).
            allow_write: explicit consent to write scopes.

        Raises:
            NotFound: the tenant has no such grant.
            ConsentRefused: the request is not pending or has expired; the approver is the
                requester, not an admin of this tenant, or has no MFA; the scopes are not a
                non-empty subset of those requested, or only write scopes remain without
                ``allow_write``; the duration is longer than requested or ``max_duration``.
        """
        grant = self._pending(tenant_id, grant_id)
        self._check_approver(grant, approver)
        granted = grant.requested_scopes if scopes is None else frozenset(scopes)
        if not granted or not granted <= grant.requested_scopes:
            raise ConsentRefused("scopes must be a non-empty subset of those requested")
        if not allow_write and any(is_write_scope(s) for s in granted):
            granted = frozenset(s for s in granted if not is_write_scope(s))
            if not granted:
                raise ConsentRefused("only write scopes were requested: consent to writes")
        window = grant.requested_duration if duration is None else duration
        self._check_duration(window)
        if window > grant.requested_duration:
            raise ConsentRefused("a grant cannot be longer than requested")
        decided = grant.with_changes(
            state=GrantState.APPROVED,
            scopes=granted,
            duration=window,
            decided_at=self._clock.now(),
            decided_by=approver.subject,
        )
        self._save(
            decided,
            actor=approver.subject,
            action="approved",
            detail={
                "scopes": sorted(granted),
                "seconds": window.total_seconds(),
                "write": allow_write,
            },
        )
        self._notify(
            "approved",
            decided,
            to=grant.engineer,
            subject=f"Access to the tenant approved for ticket {grant.ticket_id}",
        )
        return decided

    def deny(self, tenant_id: str, grant_id: str, approver: Principal, *, reason: str) -> Grant:
        """An admin of the tenant refuses the pending request; ``reason`` goes to the trail.

        Raises:
            NotFound: the tenant has no such grant.
            ConsentRefused: the request is not pending or has expired, or the approver is
                the requester, not an admin of this tenant, or has no MFA.
        """
        grant = self._pending(tenant_id, grant_id)
        self._check_approver(grant, approver)
        denied = grant.with_changes(
            state=GrantState.DENIED, decided_at=self._clock.now(), decided_by=approver.subject
        )
        self._save(denied, actor=approver.subject, action="denied", detail={"reason": reason})
        self._notify(
            "denied",
            denied,
            to=grant.engineer,
            subject=f"Access denied for ticket {grant.ticket_id}",
        )
        return denied

    def revoke(self, tenant_id: str, grant_id: str, actor: Principal, *, reason: str) -> Grant:
        """The tenant's admin (or the engineer, giving it back) ends a grant now. No MFA
        is asked: revoking only ever takes access away."""
        grant = self.get(tenant_id, grant_id)
        now = self._clock.now()
        is_engineer = actor.kind is PrincipalKind.SUPPORT and (actor.subject, actor.issuer) == (
            grant.engineer,
            grant.engineer_issuer,
        )
        if not is_engineer:
            self._check_admin(grant, actor)
        if grant.state is not GrantState.APPROVED or not grant.active_at(now):
            raise ConsentRefused("only an active grant can be revoked")
        revoked = grant.with_changes(
            state=GrantState.REVOKED, revoked_at=now, revoked_by=actor.subject
        )
        self._save(revoked, actor=actor.subject, action="revoked", detail={"reason": reason})
        self._notify(
            "revoked",
            revoked,
            to=f"tenant-admins:{tenant_id}",
            subject=f"Support access for ticket {grant.ticket_id} revoked",
        )
        return revoked

    # -- internals -------------------------------------------------------------------

    def _pending(self, tenant_id: str, grant_id: str) -> Grant:
        grant = self.get(tenant_id, grant_id)
        if grant.state is not GrantState.PENDING:
            raise ConsentRefused(f"the request is already {grant.state.value}")
        if self._clock.now() >= grant.pending_until:
            raise ConsentRefused("the request expired before anyone decided it")
        return grant

    def _check_approver(self, grant: Grant, approver: Principal) -> None:
        if (approver.subject, approver.issuer) == (grant.engineer, grant.engineer_issuer):
            raise ConsentRefused("the requester cannot approve its own request")
        self._check_admin(grant, approver)
        if not approver.mfa:
            raise ConsentRefused("approving support access needs MFA")

    def _check_admin(self, grant: Grant, approver: Principal) -> None:
        if approver.kind is not PrincipalKind.USER or approver.tenant_id != grant.tenant_id:
            raise ConsentRefused("only an admin of the tenant decides its support access")
        if self._admin_role not in approver.roles:
            raise ConsentRefused("only an admin of the tenant decides its support access")

    def _check_duration(self, duration: timedelta) -> None:
        if not timedelta(0) < duration <= self.max_duration:
            raise ConsentRefused(f"the duration must be positive and at most {self.max_duration}")
