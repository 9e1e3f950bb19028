"""The attacks: which requests the probe sends against each victim tenant, and how each
answer is judged.

Every route, for every victim tenant, as every other tenant's identity (plain, with
tenant headers, tenant query parameters, the victim's ids in the body), with tampered
credentials (none, ``alg=none``, a forged signature, expired, another audience) and as
support staff without a valid grant for the victim.

A cell is *leaked* when a response holds a canary of a tenant the actor may not read,
when a victim's snapshot changed after a write, or when a tampered credential or an
ungranted support request was served at all (2xx). A 5xx or no answer is an *error*;
anything else is *enforced*.

Its own module because the attack list and the verdict are the probe's claims, read and
extended apart from how a run sends them (:mod:`.runner`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tenancy.testing.probe.config import GrantState, Identity, ProbeConfig, Route
from tenancy.testing.probe.report import Attack, Cell, Outcome
from tenancy.testing.probe.shaping import render_path, request_body, tenant_headers, tenant_query
from tenancy.testing.probe.tokens import Resigner, alg_none, forged_signature

# Credentials that must never be served, whatever the response holds.
_NEVER_SERVED = frozenset(
    {
        Attack.NO_TOKEN,
        Attack.ALG_NONE,
        Attack.BAD_SIGNATURE,
        Attack.EXPIRED,
        Attack.WRONG_AUDIENCE,
        Attack.SUPPORT_NO_GRANT,
        Attack.SUPPORT_EXPIRED_GRANT,
    }
)


@dataclass(frozen=True, slots=True)
class AttackRequest:
    """One request to send: which ``route`` and ``victim``, which ``attack`` by which
    ``actor`` (whose own tenant is ``actor_tenant``), and what is sent. ``never_served``:
    any 2xx answer is a leak."""

    route: Route
    victim: str
    attack: Attack
    actor: str
    actor_tenant: str | None  # whose data the actor may legitimately see
    path: str
    token: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    never_served: bool = False


@dataclass(frozen=True, slots=True)
class AttackPlan:
    """What the attacks are built from, once the seed phase has run: the identities'
    ``tokens``, the tenants' ids and captured path ``values``, the issuer's ``resigner``
    (None: no expired or wrong-audience tokens), and ``canary`` to plant in bodies."""

    config: ProbeConfig
    routes: Sequence[Route]
    tokens: Mapping[str, str]
    tenant_ids: Mapping[str, str]
    values: Mapping[str, Mapping[str, str]]
    resigner: Resigner | None
    canary: Callable[[str], str]

    def requests(self) -> list[AttackRequest]:
        """Every attack request, in the order they are planned (the runner sends reads
        concurrently, then writes one at a time with deletes last)."""
        config = self.config
        out: list[AttackRequest] = []
        for route in self.routes:
            for victim in config.tenants:
                values = self.values.get(victim, {})
                path = render_path(route, values)
                if path is None:
                    continue
                body = request_body(route, self.canary("attack"))
                victim_ref = {"id": self.tenant_ids.get(victim, victim), "slug": victim}
                for person in config.users:
                    if person.tenant == victim:
                        continue
                    assert person.tenant is not None
                    token = self.tokens[person.name]
                    common = dict(
                        route=route,
                        victim=victim,
                        actor=person.name,
                        actor_tenant=person.tenant,
                        token=token,
                        body=body,
                    )
                    out.append(AttackRequest(attack=Attack.CROSS_IDENTITY, path=path, **common))
                    out.append(
                        AttackRequest(
                            attack=Attack.TENANT_HEADER,
                            path=path,
                            headers=tenant_headers(victim_ref),
                            **common,
                        )
                    )
                    out.append(
                        AttackRequest(
                            attack=Attack.TENANT_QUERY,
                            path=path,
                            query=tenant_query(victim_ref),
                            **common,
                        )
                    )
                    own_path = render_path(route, self.values.get(person.tenant, {}))
                    if route.method in ("POST", "PUT", "PATCH") and own_path is not None:
                        foreign = {
                            **({} if not isinstance(body, dict) else body),
                            "tenant_id": victim_ref["id"],
                            "tenant": victim,
                            **values,
                        }
                        out.append(
                            AttackRequest(
                                **{**common, "body": foreign},
                                attack=Attack.FOREIGN_IDS_IN_BODY,
                                path=own_path,
                            )
                        )
                out.append(
                    AttackRequest(
                        route,
                        victim,
                        Attack.NO_TOKEN,
                        "anonymous",
                        None,
                        path,
                        None,
                        body=body,
                        never_served=True,
                    )
                )
                for person in (p for p in config.users if p.tenant == victim):
                    own = self.tokens[person.name]
                    resigner = self.resigner
                    forged: list[tuple[Attack, Callable[[str], str] | None]] = [
                        (Attack.ALG_NONE, alg_none),
                        (Attack.BAD_SIGNATURE, forged_signature),
                        (Attack.EXPIRED, resigner.expired if resigner else None),
                        (Attack.WRONG_AUDIENCE, resigner.wrong_audience if resigner else None),
                    ]
                    for attack, make in forged:
                        if make is None:
                            continue
                        out.append(
                            AttackRequest(
                                route,
                                victim,
                                attack,
                                person.name,
                                None,
                                path,
                                make(own),
                                body=body,
                                never_served=True,
                            )
                        )
                for person in config.staff:
                    out += self._support_attacks(person, route, victim, path, body, values)
        return out

    def _support_attacks(
        self,
        person: Identity,
        route: Route,
        victim: str,
        path: str,
        body: Any,
        values: Mapping[str, str],
    ) -> list[AttackRequest]:
        token = self.tokens[person.name]
        target = {self.config.support_header: victim}
        if person.grant is GrantState.NONE:
            return [
                AttackRequest(
                    route,
                    victim,
                    Attack.SUPPORT_NO_GRANT,
                    person.name,
                    None,
                    path,
                    token,
                    target,
                    body=body,
                    never_served=True,
                )
            ]
        if person.grant is GrantState.EXPIRED:
            if person.tenant != victim:
                return []
            return [
                AttackRequest(
                    route,
                    victim,
                    Attack.SUPPORT_EXPIRED_GRANT,
                    person.name,
                    None,
                    path,
                    token,
                    target,
                    body=body,
                    never_served=True,
                )
            ]
        if person.tenant == victim:
            return []
        found = [
            AttackRequest(
                route,
                victim,
                Attack.SUPPORT_OTHER_TENANT_GRANT,
                person.name,
                person.tenant,
                path,
                token,
                target,
                body=body,
                never_served=True,
            )
        ]
        if route.params:  # the granted tenant named, the victim's ids in the path
            found.append(
                AttackRequest(
                    route,
                    victim,
                    Attack.SUPPORT_OTHER_TENANT_GRANT,
                    f"{person.name}@{person.tenant}",
                    person.tenant,
                    path,
                    token,
                    {self.config.support_header: str(person.tenant)},
                    body=body,
                )
            )
        return found

    def untestable(self) -> list[Cell]:
        """Routes a tenant has no object for: listed, so nothing passes unseen."""
        cells = []
        for route in self.routes:
            for victim in self.config.tenants:
                if self.resigner is None:
                    cells += [
                        Cell(
                            route.key,
                            victim,
                            attack.value,
                            "-",
                            None,
                            Outcome.SKIPPED,
                            "no [issuer] key configured to sign this token",
                        )
                        for attack in (Attack.EXPIRED, Attack.WRONG_AUDIENCE)
                    ]
                if render_path(route, self.values.get(victim, {})) is None:
                    missing = [p for p in route.params if p not in self.values.get(victim, {})]
                    cells.append(
                        Cell(
                            route.key,
                            victim,
                            Attack.CROSS_IDENTITY.value,
                            "-",
                            None,
                            Outcome.SKIPPED,
                            f"no {victim} object for {', '.join(missing)}: "
                            "add a seed route that captures it",
                        )
                    )
        return cells


def judge(
    request: AttackRequest,
    response: httpx.Response | Exception,
    changed: Sequence[str],
    *,
    tenants_in: Callable[[str], set[str]],
) -> tuple[Outcome, str]:
    """The cell's outcome and why: ``changed`` are the victim's paths that a write changed,
    ``tenants_in`` names the tenants whose canaries a text holds."""
    if changed:
        return Outcome.LEAKED, f"{request.victim}'s data changed: {', '.join(changed)}"
    if not isinstance(response, httpx.Response):
        return Outcome.ERROR, f"no answer: {response}"
    seen = tenants_in(response.text) - {request.actor_tenant or ""}
    if seen:
        return Outcome.LEAKED, f"the response holds data of {', '.join(sorted(seen))}"
    if request.never_served and response.is_success:
        return Outcome.LEAKED, (
            f"served ({response.status_code}) although the credential must be refused"
        )
    if response.status_code >= 500:
        return Outcome.ERROR, f"server error {response.status_code}"
    if response.is_success:
        return Outcome.ENFORCED, "served the caller's own data only"
    return Outcome.ENFORCED, "refused"
