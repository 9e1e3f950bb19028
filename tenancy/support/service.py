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

Every step is stored in the grant's trail with who, when and why, emitted as a
``support.*`` security event, and sent to the notifier.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import Engine

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal, PrincipalKind
from tenancy.errors import ConfigurationError, ConsentRefused, InvalidRequest, NotFound
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.support.model import Grant, GrantState
from tenancy.support.notify import LoggingNotifier, Notice, Notifier

__all__ = ["ADMIN_ROLE", "SupportAccess", "is_write_scope"]
from tenancy.support.store import GrantStore

ADMIN_ROLE = "admin"


def is_write_scope(scope: str) -> bool:
    """Scopes that change data; granted only with explicit consent to writes."""
    return not scope.endswith(":read")


class SupportAccess:
    """The support-access workflow over a :class:`GrantStore`."""

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
        self.store = GrantStore(engine)
        self.max_duration = max_duration
        self._pending_ttl = pending_ttl
        self._admin_role = admin_role
        self._clock = clock
        self._events = events if events is not None else LoggingSink()
        self._notifier = notifier if notifier is not None else LoggingNotifier()

    @property
    def admin_role(self) -> str:
        """The role that makes a tenant user an admin who decides support access."""
        return self._admin_role

    def create_schema(self) -> None:
        """Create the grant and trail tables where missing (see
        ``GrantStore.create_schema``)."""
        self.store.create_schema()

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

    def close_ticket(
        self, ticket_id: str, *, tenant_id: str, at: datetime | None = None
    ) -> list[Grant]:
        """The ticket was closed (``at``, default now; never later than now): its grants
        end 24 hours after that at the latest."""
        now = self._clock.now() if at is None else min(at, self._clock.now())
        closed = []
        with self.store.transaction(tenant_id) as conn:
            for grant in self.store.by_ticket(conn, ticket_id):
                if grant.tenant_id != tenant_id or grant.ticket_closed_at is not None:
                    continue
                updated = grant.with_changes(ticket_closed_at=now)
                self.store.put(conn, updated)
                self.store.record(
                    conn,
                    updated,
                    at=now,
                    actor="ticketing",
                    action="ticket_closed",
                    detail={"ticket": ticket_id},
                )
                closed.append(updated)
        for grant in closed:
            self._emit("ticket_closed", grant, actor="ticketing")
        return closed

    def sweep(self, tenant_id: str) -> list[Grant]:
        """Record what time has ended: pending requests nobody decided become expired,
        and grants past their end get an "expired" trail entry and notice (once each).
        Access never depends on this running; it keeps the trail and people informed."""
        now = self._clock.now()
        ended: list[Grant] = []
        with self.store.transaction(tenant_id) as conn:
            for grant in self.store.of_tenant(conn, tenant_id):
                if grant.state is GrantState.PENDING and now >= grant.pending_until:
                    grant = grant.with_changes(state=GrantState.EXPIRED)
                    self.store.put(conn, grant)
                elif not (grant.state is GrantState.APPROVED and not grant.active_at(now)):
                    continue
                if self.store.first_seq(conn, tenant_id, grant.id, "expired") is not None:
                    continue
                self.store.record(
                    conn,
                    grant,
                    at=now,
                    actor="system",
                    action="expired",
                    detail={"ended": (grant.expires_at() or grant.pending_until).isoformat()},
                )
                ended.append(grant)
        for grant in ended:
            self._emit("expired", grant, actor="system")
            self._notify(
                "expired",
                grant,
                to=f"tenant-admins:{tenant_id}",
                subject=f"Support access for ticket {grant.ticket_id} has ended",
            )
        return ended

    def now(self) -> datetime:
        """The current time on this service's clock (the time its grants are judged
        against)."""
        return self._clock.now()

    def record_break_glass(
        self, grant: Grant, *, actor: str, detail: dict[str, object], subject: str
    ) -> Grant:
        """Store an emergency grant made without consent (``tenancy.support.breakglass``
        checked the two approvals), with its trail, event and a notice to the tenant."""
        if not grant.break_glass or grant.state is not GrantState.APPROVED:
            raise ConsentRefused("not an approved break-glass grant")
        self._save(grant, actor=actor, action="break_glass", detail=detail)
        self._notify("break_glass", grant, to=f"tenant-admins:{grant.tenant_id}", subject=subject)
        return grant

    # -- reading -------------------------------------------------------------------------

    def get(self, tenant_id: str, grant_id: str) -> Grant:
        """The tenant's grant ``grant_id``, in any state.

        Raises:
            NotFound: this tenant has no such grant (another tenant's grant is never
                returned).
        """
        with self.store.transaction(tenant_id) as conn:
            grant = self.store.get(conn, tenant_id, grant_id)
        if grant is None:
            raise NotFound("no such grant")
        return grant

    def grants(self, tenant_id: str) -> list[Grant]:
        """Every grant of the tenant, any state, newest request first."""
        with self.store.transaction(tenant_id) as conn:
            return self.store.of_tenant(conn, tenant_id)

    def trail(self, tenant_id: str, grant_id: str) -> list[dict[str, object]]:
        """The grant's steps in order; ``NotFound`` for a grant this tenant does not have."""
        with self.store.transaction(tenant_id) as conn:
            if self.store.get(conn, tenant_id, grant_id) is None:
                raise NotFound("no such grant")
            return self.store.trail_of(conn, tenant_id, grant_id)

    def active_grant(
        self,
        tenant_id: str,
        engineer: Principal,
        *,
        scopes: Collection[str] = (),
        now: datetime | None = None,
    ) -> Grant | None:
        """An active grant of ``engineer`` for ``tenant_id`` covering ``scopes`` (the one
        that lasts longest, so overlapping grants never cut each other short)."""
        now = now or self._clock.now()
        with self.store.transaction(tenant_id) as conn:
            candidates = self.store.of_engineer(conn, tenant_id, engineer.subject, engineer.issuer)
        usable = [g for g in candidates if g.active_at(now) and g.covers(frozenset(scopes))]
        if not usable:
            return None
        return max(usable, key=lambda g: g.expires_at() or now)

    def record_use(self, grant: Grant, *, request_id: str, route: str) -> None:
        """Every request served under a grant goes to its trail (the first also notifies)."""
        now = self._clock.now()
        with self.store.transaction(grant.tenant_id) as conn:
            seq = self.store.record(
                conn,
                grant,
                at=now,
                actor=grant.engineer,
                action="used",
                detail={"request_id": request_id, "route": route},
            )
            # Asked after the append, under its lock: of uses served at once, one is first.
            first = self.store.first_seq(conn, grant.tenant_id, grant.id, "used") == seq
        self._emit("used", grant, actor=grant.engineer)
        if first:
            self._notify(
                "first_use",
                grant,
                to=f"tenant-admins:{grant.tenant_id}",
                subject=f"Support used its access for ticket {grant.ticket_id}",
            )

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

    def _save(self, grant: Grant, *, actor: str, action: str, detail: dict[str, object]) -> None:
        with self.store.transaction(grant.tenant_id) as conn:
            self.store.put(conn, grant)
            self.store.record(
                conn, grant, at=self._clock.now(), actor=actor, action=action, detail=detail
            )
        self._emit(action, grant, actor=actor)

    def _emit(self, action: str, grant: Grant, *, actor: str) -> None:
        self._events.emit(
            SecurityEvent(
                action=f"support.{action}",
                at=self._clock.now(),
                tenant_id=grant.tenant_id,
                actor=actor,
                details={
                    "grant_id": grant.id,
                    "ticket": grant.ticket_id,
                    "engineer": grant.engineer,
                },
            )
        )

    def _notify(self, kind: str, grant: Grant, *, to: str, subject: str) -> None:
        expires = grant.expires_at()
        scopes = ", ".join(sorted(grant.scopes or grant.requested_scopes))
        body = (
            f"Ticket {grant.ticket_id}: {grant.justification}\n"
            f"Engineer: {grant.engineer}\nScopes: {scopes}\n"
            f"Ends: {expires.isoformat() if expires else 'not approved'}"
        )
        self._notifier.notify(
            Notice(
                kind=kind,
                tenant_id=grant.tenant_id,
                grant_id=grant.id,
                to=to,
                subject=subject,
                body=body,
            )
        )
