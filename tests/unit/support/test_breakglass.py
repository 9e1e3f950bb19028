"""Break-glass: off unless configured; two distinct MFA'd staff leads; short; read-only;
stored with its trail, emitted, and told to the tenant's admins. Refusals change nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.errors import ConfigurationError, ConsentRefused, InvalidRequest
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER
from tenancy.support import GrantState, MemoryNotifier, SupportAccess
from tenancy.support.breakglass import BreakGlass
from tenancy.tenants import Tenant

STAFF = "00000000-0000-4000-8000-000000000001"
HOUR = timedelta(hours=1)

ENGINEER = Principal(
    issuer=DEV_ISSUER,
    tenant_id=STAFF,
    subject="bob",
    kind=PrincipalKind.SUPPORT,
    assurance=Assurance.MULTI_FACTOR,
)


def lead(subject: str, **changes: Any) -> Principal:
    base = Principal(
        issuer=DEV_ISSUER,
        tenant_id=STAFF,
        subject=subject,
        kind=PrincipalKind.SUPPORT,
        roles=frozenset({"support-lead"}),
        assurance=Assurance.MULTI_FACTOR,
    )
    return replace(base, **changes)


CAROL, DAVE = lead("carol"), lead("dave")


@pytest.fixture
def notifier() -> MemoryNotifier:
    return MemoryNotifier()


@pytest.fixture
def support(
    engine: Engine, clock: FrozenClock, events: MemorySink, notifier: MemoryNotifier
) -> SupportAccess:
    access = SupportAccess(engine, clock=clock, events=events, notifier=notifier)
    access.create_schema()
    return access


@pytest.fixture
def glass(support: SupportAccess) -> BreakGlass:
    return BreakGlass(support, enabled=True)


def use(glass: BreakGlass, tenant: Tenant, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "ticket_id": "INC-7",
        "justification": "outage: data lost?",
        "scopes": {"worklogs:read"},
        "duration": HOUR,
        "approvals": [CAROL, DAVE],
    }
    engineer = overrides.pop("engineer", ENGINEER)
    kwargs.update(overrides)
    return glass.grant(tenant.id, engineer, **kwargs)


def nothing_happened(
    support: SupportAccess, events: MemorySink, notifier: MemoryNotifier, tenant: Tenant
) -> None:
    assert support.grants(tenant.id) == []
    assert [e for e in events.events if e.action.startswith("support.")] == []
    assert notifier.notices == []


# -- the happy path ---------------------------------------------------------------------


def test_two_staff_leads_open_a_read_only_grant_without_the_tenant(
    glass: BreakGlass,
    support: SupportAccess,
    clock: FrozenClock,
    events: MemorySink,
    notifier: MemoryNotifier,
    acme: Tenant,
) -> None:
    grant = use(glass, acme, scopes={"worklogs:read", "worklogs:write"})

    assert grant.break_glass and grant.state is GrantState.APPROVED
    assert grant.scopes == frozenset({"worklogs:read"})  # writes dropped
    assert grant.requested_scopes == frozenset({"worklogs:read", "worklogs:write"})
    assert grant.decided_at == clock.now() and grant.expires_at() == clock.now() + HOUR
    assert support.get(acme.id, grant.id) == grant  # stored as returned
    assert support.active_grant(acme.id, ENGINEER, scopes={"worklogs:read"}) == grant
    assert support.active_grant(acme.id, ENGINEER, scopes={"worklogs:write"}) is None

    [entry] = support.trail(acme.id, grant.id)
    assert entry["action"] == "break_glass" and entry["actor"] == "bob"
    detail: Any = entry["detail"]
    assert [a["subject"] for a in detail["approvers"]] == ["carol", "dave"]
    assert detail["dropped_scopes"] == ["worklogs:write"]
    assert detail["justification"] == "outage: data lost?"

    [event] = [e for e in events.events if e.action.startswith("support.")]
    assert event.action == "support.break_glass" and event.tenant_id == acme.id
    assert event.details["grant_id"] == grant.id

    [notice] = notifier.notices
    assert notice.kind == "break_glass" and notice.to == f"tenant-admins:{acme.id}"
    assert notice.grant_id == grant.id and notice.tenant_id == acme.id
    assert "carol" in notice.subject and "dave" in notice.subject


def test_the_grant_ends_after_its_duration_and_the_tenant_admin_can_revoke_it(
    glass: BreakGlass, support: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant = use(glass, acme, duration=timedelta(minutes=30))
    clock.advance(30 * 60 - 1)
    assert support.active_grant(acme.id, ENGINEER) is not None
    clock.advance(1)
    assert support.active_grant(acme.id, ENGINEER) is None

    second = use(glass, acme)
    admin = Principal(
        issuer=DEV_ISSUER,
        tenant_id=acme.id,
        subject="alice",
        roles=frozenset({"admin"}),
        assurance=Assurance.MULTI_FACTOR,
    )
    revoked = support.revoke(acme.id, second.id, admin, reason="we were not asked")
    assert revoked.state is GrantState.REVOKED and revoked.break_glass
    assert support.get(acme.id, grant.id).status_at(clock.now()) == "expired"


def test_more_than_two_approvers_and_same_subject_from_another_issuer_count(
    glass: BreakGlass, acme: Tenant
) -> None:
    other_carol = lead("carol", issuer="https://staff-idp.example")
    assert use(glass, acme, approvals=[CAROL, other_carol]).break_glass
    assert use(glass, acme, approvals=[CAROL, DAVE, lead("erin")]).break_glass


def test_role_and_maximum_are_configurable(support: SupportAccess, acme: Tenant) -> None:
    glass = BreakGlass(
        support, enabled=True, max_duration=timedelta(hours=2), approvers_role="incident-commander"
    )
    commanders = [
        lead("carol", roles=frozenset({"incident-commander"})),
        lead("dave", roles=frozenset({"incident-commander"})),
    ]
    assert use(glass, acme, duration=timedelta(hours=2), approvals=commanders).break_glass
    with pytest.raises(ConsentRefused):
        use(glass, acme)  # support-lead is not enough here


# -- refusals ---------------------------------------------------------------------------


def test_off_by_default(
    support: SupportAccess, events: MemorySink, notifier: MemoryNotifier, acme: Tenant
) -> None:
    glass = BreakGlass(support)
    assert glass.enabled is False
    with pytest.raises(ConsentRefused, match="break-glass is not enabled"):
        use(glass, acme)
    nothing_happened(support, events, notifier, acme)


Case = Callable[[], dict[str, Any]]

REFUSED: dict[str, Case] = {
    "engineer is a tenant user": lambda: {"engineer": replace(ENGINEER, kind=PrincipalKind.USER)},
    "engineer is a service": lambda: {"engineer": replace(ENGINEER, kind=PrincipalKind.SERVICE)},
    "no approvers": lambda: {"approvals": []},
    "one approver": lambda: {"approvals": [CAROL]},
    "the same approver twice": lambda: {"approvals": [CAROL, CAROL]},
    "same approver, other roles": lambda: {
        "approvals": [CAROL, lead("carol", roles=frozenset({"support-lead", "admin"}))]
    },
    "the engineer approves": lambda: {"approvals": [CAROL, lead("bob")]},
    "approver is a tenant admin": lambda: {
        "approvals": [
            CAROL,
            lead("dave", kind=PrincipalKind.USER, roles=frozenset({"support-lead", "admin"})),
        ]
    },
    "approver lacks the role": lambda: {
        "approvals": [CAROL, lead("dave", roles=frozenset({"support"}))]
    },
    "approver without MFA": lambda: {
        "approvals": [CAROL, lead("dave", assurance=Assurance.SINGLE_FACTOR)]
    },
    "approver of another tenant": lambda: {
        "approvals": [CAROL, lead("dave", tenant_id="00000000-0000-4000-8000-0000000000ff")]
    },
    "too long": lambda: {"duration": HOUR + timedelta(seconds=1)},
    "zero duration": lambda: {"duration": timedelta(0)},
    "negative duration": lambda: {"duration": -HOUR},
    "only write scopes": lambda: {"scopes": {"worklogs:write", "worklogs:delete"}},
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_refused_and_nothing_happens(
    case: Case,
    glass: BreakGlass,
    support: SupportAccess,
    events: MemorySink,
    notifier: MemoryNotifier,
    acme: Tenant,
) -> None:
    with pytest.raises(ConsentRefused):
        use(glass, acme, **case())
    nothing_happened(support, events, notifier, acme)


@pytest.mark.parametrize(
    "overrides",
    [
        {"ticket_id": "  "},
        {"justification": ""},
        {"scopes": set()},
        {"scopes": "worklogs:read"},
    ],
)
def test_incomplete_requests_are_invalid(
    overrides: dict[str, Any],
    glass: BreakGlass,
    support: SupportAccess,
    events: MemorySink,
    notifier: MemoryNotifier,
    acme: Tenant,
) -> None:
    with pytest.raises(InvalidRequest):
        use(glass, acme, **overrides)
    nothing_happened(support, events, notifier, acme)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_duration": timedelta(0)},
        {"max_duration": -HOUR},
        {"approvers_role": " "},
    ],
)
def test_unsafe_configuration_is_refused(kwargs: dict[str, Any], support: SupportAccess) -> None:
    with pytest.raises(ConfigurationError):
        BreakGlass(support, enabled=True, **kwargs)
