"""The grant lifecycle: who may consent, to what, for how long, and when it ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tenancy.clock import FrozenClock
from tenancy.context import Assurance, PrincipalKind
from tenancy.errors import ConsentRefused, InvalidRequest
from tenancy.events import MemorySink
from tenancy.support import GrantState, MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant
from tests.unit.support.conftest import admin, engineer

READ = ["worklogs:read"]
HOURS = timedelta(hours=1)


def pending(
    support: SupportAccess,
    tenant: Tenant,
    *,
    scopes: list[str] = READ,
    duration: timedelta = 2 * HOURS,
    ticket: str = "T-1",
) -> str:
    return support.request(
        tenant.id,
        engineer(),
        ticket_id=ticket,
        justification="customer cannot export",
        scopes=scopes,
        duration=duration,
    ).id


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("self", "requester"),
        ("member", "admin"),
        ("other tenant admin", "admin"),
        ("no mfa", "MFA"),
        ("support staff", "admin"),
    ],
)
def test_approval_by_the_wrong_person_is_refused(
    support: SupportAccess, acme: Tenant, globex: Tenant, who: str, why: str
) -> None:
    grant_id = pending(support, acme)
    approver = {
        "self": engineer(roles=frozenset({"admin"})),
        "member": admin(acme, roles=frozenset({"member"})),
        "other tenant admin": admin(globex),
        "no mfa": admin(acme, assurance=Assurance.SINGLE_FACTOR),
        "support staff": engineer("lead", roles=frozenset({"admin"})),
    }[who]
    with pytest.raises(ConsentRefused, match=why):
        support.approve(acme.id, grant_id, approver, duration=HOURS)
    assert support.get(acme.id, grant_id).state is GrantState.PENDING


def test_scopes_wider_than_requested_are_refused(support: SupportAccess, acme: Tenant) -> None:
    grant_id = pending(support, acme)
    with pytest.raises(ConsentRefused, match="subset"):
        support.approve(acme.id, grant_id, admin(acme), scopes=["worklogs:read", "worklogs:export"])
    assert support.get(acme.id, grant_id).state is GrantState.PENDING


@pytest.mark.parametrize("hours", [9, 3])
def test_duration_over_the_maximum_or_the_request_is_refused(
    support: SupportAccess, acme: Tenant, hours: int
) -> None:
    grant_id = pending(support, acme)
    with pytest.raises(ConsentRefused):
        support.approve(acme.id, grant_id, admin(acme), duration=timedelta(hours=hours))


def test_request_longer_than_the_maximum_is_refused(support: SupportAccess, acme: Tenant) -> None:
    with pytest.raises(ConsentRefused):
        pending(support, acme, duration=timedelta(hours=9))
    assert support.grants(acme.id) == []


def test_only_support_staff_request_with_ticket_and_reason(
    support: SupportAccess, acme: Tenant
) -> None:
    with pytest.raises(ConsentRefused):
        support.request(
            acme.id, admin(acme), ticket_id="T", justification="j", scopes=READ, duration=HOURS
        )
    with pytest.raises(InvalidRequest):
        support.request(
            acme.id, engineer(), ticket_id=" ", justification="j", scopes=READ, duration=HOURS
        )


def test_grants_are_read_only_unless_writes_are_consented(
    support: SupportAccess, acme: Tenant
) -> None:
    both = ["worklogs:read", "worklogs:write"]
    read_only = support.approve(acme.id, pending(support, acme, scopes=both), admin(acme))
    assert read_only.scopes == {"worklogs:read"}
    writable = support.approve(
        acme.id, pending(support, acme, scopes=both), admin(acme), allow_write=True
    )
    assert writable.scopes == {"worklogs:read", "worklogs:write"}
    with pytest.raises(ConsentRefused, match="writes"):
        support.approve(acme.id, pending(support, acme, scopes=["worklogs:write"]), admin(acme))


def test_window_counts_from_approval_not_from_the_request(
    support: SupportAccess, acme: Tenant, clock: FrozenClock
) -> None:
    grant_id = pending(support, acme, duration=2 * HOURS)
    clock.advance(3 * 3600)  # the request waited three hours
    grant = support.approve(acme.id, grant_id, admin(acme))
    start = clock.now()
    assert grant.active_at(start + timedelta(hours=1, minutes=59))
    assert not grant.active_at(start + 2 * HOURS)


def test_ticket_closure_ends_the_grant_24_hours_later(
    support: SupportAccess, acme: Tenant, clock: FrozenClock
) -> None:
    long = SupportAccess(support.store._engine, max_duration=timedelta(days=3), clock=clock)
    grant_id = long.request(
        acme.id,
        engineer(),
        ticket_id="T-9",
        justification="j",
        scopes=READ,
        duration=timedelta(days=3),
    ).id
    long.approve(acme.id, grant_id, admin(acme))
    clock.advance(3600)
    closed_at = clock.now()
    assert len(long.close_ticket("T-9", tenant_id=acme.id)) == 1
    grant = long.get(acme.id, grant_id)
    assert grant.active_at(closed_at + timedelta(hours=23, minutes=59))
    assert not grant.active_at(closed_at + timedelta(hours=24))
    assert grant.expires_at() == closed_at + timedelta(hours=24)


def test_pending_requests_expire(support: SupportAccess, acme: Tenant, clock: FrozenClock) -> None:
    grant_id = pending(support, acme)
    clock.advance(2 * 86400)
    with pytest.raises(ConsentRefused, match="expired"):
        support.approve(acme.id, grant_id, admin(acme))
    assert support.get(acme.id, grant_id).status_at(clock.now()) == "expired"


def test_revocation_ends_the_grant_at_once(
    support: SupportAccess, acme: Tenant, clock: FrozenClock
) -> None:
    grant_id = pending(support, acme)
    support.approve(acme.id, grant_id, admin(acme))
    assert support.active_grant(acme.id, engineer()) is not None
    support.revoke(acme.id, grant_id, admin(acme), reason="done")
    assert support.active_grant(acme.id, engineer()) is None
    with pytest.raises(ConsentRefused):
        support.revoke(acme.id, grant_id, admin(acme), reason="again")


def test_overlapping_grants_do_not_cut_each_other_short(
    support: SupportAccess, acme: Tenant, clock: FrozenClock
) -> None:
    long_id = pending(support, acme, duration=4 * HOURS, ticket="T-1")
    support.approve(acme.id, long_id, admin(acme))
    short_id = pending(support, acme, duration=HOURS, ticket="T-2")
    support.approve(acme.id, short_id, admin(acme))
    clock.advance(2 * 3600)  # the short one has ended, the long one goes on
    active = support.active_grant(acme.id, engineer())
    assert active is not None and active.id == long_id


def test_grant_for_one_tenant_says_nothing_about_another(
    support: SupportAccess, acme: Tenant, globex: Tenant
) -> None:
    support.approve(acme.id, pending(support, acme), admin(acme))
    assert support.active_grant(globex.id, engineer()) is None
    assert support.active_grant(acme.id, engineer("someone-else")) is None
    assert (
        support.active_grant(
            acme.id, engineer(kind=PrincipalKind.SUPPORT), scopes=["worklogs:write"]
        )
        is None
    )


def test_every_step_is_in_the_trail_events_and_notices(
    support: SupportAccess, acme: Tenant, events: MemorySink, notices: MemoryNotifier
) -> None:
    grant_id = pending(support, acme)
    support.approve(acme.id, grant_id, admin(acme))
    grant = support.get(acme.id, grant_id)
    support.record_use(grant, request_id="r-1", route="/worklogs")
    support.record_use(grant, request_id="r-2", route="/worklogs")
    support.revoke(acme.id, grant_id, admin(acme), reason="ticket solved")
    trail = support.trail(acme.id, grant_id)
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("requested", "sam"),
        ("approved", "ann"),
        ("used", "sam"),
        ("used", "sam"),
        ("revoked", "ann"),
    ]
    assert trail[4]["detail"] == {"reason": "ticket solved"}
    assert {"support.requested", "support.approved", "support.revoked"} <= set(events.actions())
    assert [n.kind for n in notices.notices] == ["requested", "approved", "first_use", "revoked"]
    assert notices.notices[0].to == f"tenant-admins:{acme.id}"


def test_denied_request_cannot_be_approved_later(support: SupportAccess, acme: Tenant) -> None:
    grant_id = pending(support, acme)
    support.deny(acme.id, grant_id, admin(acme), reason="not needed")
    with pytest.raises(ConsentRefused, match="denied"):
        support.approve(acme.id, grant_id, admin(acme))


def test_only_the_engineer_itself_may_give_a_grant_back(
    support: SupportAccess, acme: Tenant
) -> None:
    grant_id = pending(support, acme)
    support.approve(acme.id, grant_id, admin(acme))
    namesake = admin(acme, subject="sam", roles=frozenset(), kind=PrincipalKind.USER)
    with pytest.raises(ConsentRefused):
        support.revoke(acme.id, grant_id, namesake, reason="not mine")
    assert support.revoke(acme.id, grant_id, engineer(), reason="done").state is (
        GrantState.REVOKED
    )


def test_ticket_closure_counts_from_when_it_closed(
    support: SupportAccess, acme: Tenant, clock: FrozenClock
) -> None:
    long = SupportAccess(support.store._engine, max_duration=timedelta(days=3), clock=clock)
    grant_id = long.request(
        acme.id,
        engineer(),
        ticket_id="T-5",
        justification="j",
        scopes=READ,
        duration=timedelta(days=3),
    ).id
    long.approve(acme.id, grant_id, admin(acme))
    closed_at = clock.now()
    clock.advance(3600)  # the webhook arrives an hour after the ticket closed
    long.close_ticket("T-5", tenant_id=acme.id, at=closed_at)
    assert long.get(acme.id, grant_id).expires_at() == closed_at + timedelta(hours=24)


def test_sweep_records_and_notifies_each_ending_once(
    support: SupportAccess, acme: Tenant, clock: FrozenClock, notices: MemoryNotifier
) -> None:
    approved = pending(support, acme, duration=HOURS, ticket="T-1")
    support.approve(acme.id, approved, admin(acme))
    undecided = pending(support, acme, ticket="T-2")
    assert support.sweep(acme.id) == []
    clock.advance(2 * 86400)
    assert {g.id for g in support.sweep(acme.id)} == {approved, undecided}
    assert support.sweep(acme.id) == []  # once each
    assert support.get(acme.id, undecided).state is GrantState.EXPIRED
    assert [n.kind for n in notices.notices].count("expired") == 2
    assert support.trail(acme.id, approved)[-1]["action"] == "expired"
