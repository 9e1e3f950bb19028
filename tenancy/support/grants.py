"""A tenant's support grants as a record: reading them, the admission-time lookup of an
engineer's active grant, and what happens to grants without anyone deciding (each use,
ticket closure, expiry, a break-glass grant).

Every step is stored in the grant's trail with who, when and why, emitted as a
``support.*`` security event, and sent to the notifier.

Its own module because this is what runs on every request and on a timer, apart from the
consent workflow (:mod:`tenancy.support.service`), which adds the decisions of people
(request, approve, deny, revoke) and the rules they are checked against.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Engine

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal
from tenancy.errors import ConsentRefused, NotFound
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.support.model import Grant, GrantState
from tenancy.support.notify import LoggingNotifier, Notice, Notifier
from tenancy.support.store import GrantStore


class SupportGrants:
    """The grants of support access over a :class:`GrantStore`, without the consent
    workflow (:class:`~tenancy.support.service.SupportAccess` adds it)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventSink | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = GrantStore(engine)
        self._clock = clock
        self._events = events if events is not None else LoggingSink()
        self._notifier = notifier if notifier is not None else LoggingNotifier()

    def create_schema(self) -> None:
        """Create the grant and trail tables where missing (see
        ``GrantStore.create_schema``)."""
        self.store.create_schema()

    # -- what happens without a decision ---------------------------------------------

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

    # -- recording -------------------------------------------------------------------

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
