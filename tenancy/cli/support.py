"""``tenancy support``: the support-access workflow, acting as the named people."""

from __future__ import annotations

import argparse

from tenancy.cli.common import settings_of as _settings


def support_command(args: argparse.Namespace) -> int:
    """``tenancy support ...``: request, consent to, list and revoke support grants."""
    from datetime import timedelta

    from tenancy.clock import SYSTEM_CLOCK
    from tenancy.context import Assurance, Principal, PrincipalKind
    from tenancy.deployment import STAFF_TENANT_ID, open_registry, open_support
    from tenancy.identity import DEV_ISSUER
    from tenancy.support import Grant

    settings = _settings(args)
    tenant = open_registry(settings).get_by_slug(args.tenant)
    support = open_support(settings)

    def scopes(text: str) -> list[str]:
        return [s for s in text.replace(",", " ").split() if s]

    def hours(value: float | None) -> timedelta | None:
        return None if value is None else timedelta(hours=value)

    def ends(grant: Grant) -> str:
        expires = grant.expires_at()
        return "-" if expires is None else expires.isoformat()

    def admin() -> Principal:
        # The operator acts as the named tenant user, with the roles and MFA it asserts.
        return Principal(
            issuer=DEV_ISSUER,
            tenant_id=tenant.id,
            subject=args.actor,
            kind=PrincipalKind.USER,
            roles=frozenset(r for r in args.roles.split(",") if r),
            assurance=(
                Assurance.MULTI_FACTOR if getattr(args, "mfa", False) else Assurance.SINGLE_FACTOR
            ),
        )

    if args.action == "request":
        engineer = Principal(
            issuer=DEV_ISSUER,
            tenant_id=STAFF_TENANT_ID,
            subject=args.actor,
            kind=PrincipalKind.SUPPORT,
        )
        duration = hours(args.hours)
        assert duration is not None
        grant = support.request(
            tenant.id,
            engineer,
            ticket_id=args.ticket,
            justification=args.justification,
            scopes=scopes(args.scopes),
            duration=duration,
        )
        print(grant.id)
    elif args.action == "approve":
        grant = support.approve(
            tenant.id,
            args.grant_id,
            admin(),
            duration=hours(args.hours),
            scopes=scopes(args.scopes) if args.scopes else None,
            allow_write=args.allow_write,
        )
        print(f"{grant.id}\tapproved\t{','.join(sorted(grant.scopes))}\t{ends(grant)}")
    elif args.action == "deny":
        grant = support.deny(tenant.id, args.grant_id, admin(), reason=args.reason)
        print(f"{grant.id}\tdenied")
    elif args.action == "revoke":
        grant = support.revoke(tenant.id, args.grant_id, admin(), reason=args.reason)
        print(f"{grant.id}\trevoked\t{ends(grant)}")
    elif args.action == "list":
        now = SYSTEM_CLOCK.now()
        support.sweep(tenant.id)  # endings go to the trail and the admins first
        for grant in support.grants(tenant.id):
            shown = grant.scopes or grant.requested_scopes
            print(
                f"{grant.id}\t{grant.status_at(now)}\t{grant.engineer}\t{grant.ticket_id}\t"
                f"{','.join(sorted(shown))}\t{ends(grant)}"
            )
    elif args.action == "close-ticket":
        for grant in support.close_ticket(args.ticket, tenant_id=tenant.id):
            print(f"{grant.id}\tticket closed\t{ends(grant)}")
    return 0
