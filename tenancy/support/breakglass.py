"""Break-glass: emergency support access without the tenant's consent. OFF by default.

A deployment turns it on explicitly (``BreakGlass(support, enabled=True)``). Each use
then needs, and is refused with ``ConsentRefused`` without:

- a support principal as the engineer, a ticket and a justification;
- at least two distinct staff approvers: support principals of the engineer's (staff)
  tenant holding ``approvers_role``, authenticated with MFA, none of them the engineer;
- a duration no longer than ``max_duration`` (one hour by default).

The grant is read-only whatever was asked (write scopes are dropped: emergencies read),
marked ``break_glass``, active at once, stored with a ``break_glass`` trail entry naming
every approver, emitted as ``support.break_glass``, and the tenant's admins are told at
once. The tenant's admin can revoke it like any other grant.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta

from tenancy.context import Principal, PrincipalKind
from tenancy.errors import ConfigurationError, ConsentRefused, InvalidRequest
from tenancy.support.model import Grant, GrantState
from tenancy.support.service import SupportAccess, is_write_scope

__all__ = ["BREAK_GLASS_APPROVERS_ROLE", "MIN_APPROVERS", "BreakGlass"]

BREAK_GLASS_APPROVERS_ROLE = "support-lead"
MIN_APPROVERS = 2


class BreakGlass:
    """Emergency read-only grants, approved by two staff leads instead of the tenant."""

    def __init__(
        self,
        support: SupportAccess,
        *,
        enabled: bool = False,
        max_duration: timedelta = timedelta(hours=1),
        approvers_role: str = BREAK_GLASS_APPROVERS_ROLE,
    ) -> None:
        if max_duration <= timedelta(0):
            raise ConfigurationError("break-glass max_duration must be positive")
        if not approvers_role.strip():
            raise ConfigurationError("break-glass needs an approvers role")
        self._support = support
        self.enabled = enabled is True
        self.max_duration = max_duration
        self.approvers_role = approvers_role

    def grant(
        self,
        tenant_id: str,
        engineer: Principal,
        *,
        ticket_id: str,
        justification: str,
        scopes: Collection[str],
        duration: timedelta,
        approvals: Sequence[Principal],
    ) -> Grant:
        """An approved, read-only, break-glass grant of ``engineer`` for ``tenant_id``."""
        if not self.enabled:
            raise ConsentRefused("break-glass is not enabled")
        if engineer.kind is not PrincipalKind.SUPPORT:
            raise ConsentRefused("only support staff use break-glass access")
        if not ticket_id.strip() or not justification.strip():
            raise InvalidRequest("a ticket id and a justification are required")
        if isinstance(scopes, str) or not scopes:
            raise InvalidRequest("name the scopes the emergency needs")
        wanted = frozenset(scopes)
        read_only = frozenset(s for s in wanted if not is_write_scope(s))
        if not read_only:
            raise ConsentRefused("break-glass access is read-only: name a read scope")
        if not timedelta(0) < duration <= self.max_duration:
            raise ConsentRefused(
                f"a break-glass duration must be positive and at most {self.max_duration}"
            )
        approvers = self._check_approvals(engineer, approvals)

        now = self._support.now()
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
            pending_until=now,
            state=GrantState.APPROVED,
            scopes=read_only,
            duration=duration,
            decided_at=now,
            decided_by="break-glass",
            break_glass=True,
        )
        names = " and ".join(a.subject for a in approvers)
        return self._support.record_break_glass(
            grant,
            actor=engineer.subject,
            detail={
                "approvers": [{"subject": a.subject, "issuer": a.issuer} for a in approvers],
                "scopes": sorted(read_only),
                "dropped_scopes": sorted(wanted - read_only),
                "seconds": duration.total_seconds(),
                "ticket": grant.ticket_id,
                "justification": grant.justification,
            },
            subject=(
                f"Emergency (break-glass) read-only support access for ticket "
                f"{grant.ticket_id}, approved by {names}"
            ),
        )

    def _check_approvals(
        self, engineer: Principal, approvals: Sequence[Principal]
    ) -> list[Principal]:
        seen: set[tuple[str, str]] = set()
        for approver in approvals:
            who = (approver.subject, approver.issuer)
            if who == (engineer.subject, engineer.issuer):
                raise ConsentRefused("the engineer cannot approve its own break-glass access")
            if who in seen:
                raise ConsentRefused("break-glass approvers must be distinct people")
            if (
                approver.kind is not PrincipalKind.SUPPORT
                or approver.tenant_id != engineer.tenant_id
                or self.approvers_role not in approver.roles
            ):
                raise ConsentRefused(
                    f"break-glass approvers must be staff with the role {self.approvers_role!r}"
                )
            if not approver.mfa:
                raise ConsentRefused("approving break-glass access needs MFA")
            seen.add(who)
        if len(seen) < MIN_APPROVERS:
            raise ConsentRefused(f"break-glass needs {MIN_APPROVERS} distinct staff approvers")
        return list(approvals)
