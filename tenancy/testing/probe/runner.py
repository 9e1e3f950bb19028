"""The probe: seed data as every identity, prove each reaches its own, then attack.

1. **Seed.** Every identity sends every seed route, with a unique *canary* string in the
   body; captured path parameters (ids, link tokens) name the tenant's objects.
2. **Snapshot.** Each tenant's data-bearing reads (responses holding its canaries).
3. **Positive controls.** Every identity must read its own tenant's data; support staff
   with an active grant must read the grant's tenant; staff without one must at least be
   authenticated (403, not 401). Any failure makes the run *void*: refusals prove nothing
   if nothing is ever allowed.
4. **Attacks.** Every route, for every victim tenant, as every other tenant's identity
   (plain, with tenant headers, tenant query parameters, the victim's ids in the body),
   with tampered credentials (none, ``alg=none``, a forged signature, expired, another
   audience) and as support staff without a valid grant for the victim.

A cell is *leaked* when a response holds a canary of a tenant the actor may not read,
when a victim's snapshot changed after a write, or when a tampered credential or an
ungranted support request was served at all (2xx). A 5xx or no answer is an *error*;
anything else is *enforced*. Reads run concurrently; writes run one at a time, each
followed by a look at the victim, so a change is pinned to the request that made it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tenancy.errors import ProbeConfigError
from tenancy.testing.probe.config import (
    GrantState,
    Identity,
    ProbeConfig,
    Route,
)
from tenancy.testing.probe.report import (
    Attack,
    Cell,
    Control,
    Outcome,
    ProbeReport,
    void_reasons,
)
from tenancy.testing.probe.routes import merge
from tenancy.testing.probe.shaping import (
    canonical,
    captured,
    render_path,
    request_body,
    tenant_headers,
    tenant_query,
)
from tenancy.testing.probe.tokens import Resigner, alg_none, claims, forged_signature, obtain

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
class _Request:
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


class Probe:
    """One probe run over ``config`` (plus routes found elsewhere, e.g. in an OpenAPI
    document or the app itself). Call :meth:`run` with an ``httpx.AsyncClient`` whose
    base URL is the target, or whose transport is an in-process ASGI app."""

    def __init__(self, config: ProbeConfig, *, discovered: Sequence[Route] = ()) -> None:
        self.config = config
        self.routes = merge(config.routes, discovered, config.exclude)
        if not self.routes:
            raise ProbeConfigError("no routes to probe")
        self._tokens: dict[str, str] = {}
        self._tenant_ids: dict[str, str] = dict(config.tenant_ids)
        self._values: dict[str, dict[str, str]] = {}
        self._canaries: dict[str, str] = {}  # canary -> tenant
        self._snapshots: dict[str, dict[str, tuple[str, str]]] = {}
        self._listings: set[str] = set()
        self._requests = 0
        self._resigner = Resigner(config.issuer) if config.issuer is not None else None

    def prepare(self) -> None:
        """Obtain every token (commands, files, the dev issuer) before any request."""
        people = self.config.identities
        with ThreadPoolExecutor(max_workers=min(8, len(people))) as pool:
            tokens = pool.map(lambda p: obtain(p.token, name=p.name), people)
            self._tokens.update(zip((p.name for p in people), tokens, strict=True))
        for person in self.config.users:
            assert person.tenant is not None
            tid = claims(self._tokens[person.name]).get("tid")
            if person.tenant in self.config.tenant_ids or not isinstance(tid, str):
                continue
            known = self._tenant_ids.setdefault(person.tenant, tid)
            if known != tid:
                raise ProbeConfigError(
                    f"{person.name}: its token names tenant {tid!r}, "
                    f"other identities of {person.tenant!r} name {known!r}"
                )

    async def run(self, client: httpx.AsyncClient) -> ProbeReport:
        """Run the probe against ``client`` (obtaining tokens first if ``prepare`` was not
        called): seed, snapshot, positive controls, then the attacks, reads concurrently and
        writes one at a time with deletes last. A void run sends no attack at all. Returns
        the report; a leak is a cell in it, never an exception.

        Raises:
            ProbeConfigError: a token cannot be obtained, or tokens disagree about a tenant
                id.
        """
        if not self._tokens:
            await asyncio.to_thread(self.prepare)
        started, clock = datetime.now(UTC), time.perf_counter()
        await self._seed(client)
        for tenant in self.config.tenants:
            self._snapshots[tenant] = await self._snapshot(client, tenant)
        controls = await self._controls(client)
        void = void_reasons(self.config, controls, self._values)
        cells: list[Cell] = []
        if not void:
            requests = self._attacks()
            reads = [r for r in requests if not r.route.mutating]
            writes = sorted(
                (r for r in requests if r.route.mutating), key=lambda r: r.route.method == "DELETE"
            )
            limit = asyncio.Semaphore(self.config.concurrency)

            async def bounded(request: _Request) -> Cell:
                async with limit:
                    return await self._attack(client, request)

            cells += await asyncio.gather(*(bounded(r) for r in reads))
            for request in writes:
                cells.append(await self._attack(client, request))
            cells += self._untestable()
        finished = datetime.now(UTC)
        return ProbeReport(
            target=str(client.base_url),
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            duration_s=time.perf_counter() - clock,
            tenants=self.config.tenants,
            identities=tuple(
                {
                    "name": p.name,
                    "tenant": p.tenant,
                    "kind": "support" if p.support else "user",
                    **({"grant": p.grant.value} if p.support else {}),
                }
                for p in self.config.identities
            ),
            routes=tuple(r.key for r in self.routes),
            controls=tuple(controls),
            cells=tuple(cells),
            void_reasons=tuple(void),
            requests=self._requests,
        )

    # -- phases ------------------------------------------------------------------------

    async def _seed(self, client: httpx.AsyncClient) -> None:
        for route in (r for r in self.routes if r.seed):
            for person in self.config.users:
                assert person.tenant is not None
                values = self._values.setdefault(person.tenant, {})
                path = render_path(route, values)
                if path is None:
                    continue
                canary = self._canary(person.tenant)
                response = await self._send(
                    client,
                    route.method,
                    path,
                    token=self._tokens[person.name],
                    body=request_body(route, canary),
                )
                if isinstance(response, httpx.Response) and response.is_success:
                    for capture in route.captures:
                        value = captured(response, capture.source, capture.pattern)
                        if value is not None:
                            values.setdefault(capture.param, value)

    async def _snapshot(self, client: httpx.AsyncClient, tenant: str) -> dict[str, tuple[str, str]]:
        """The tenant's data-bearing reads, each by the first identity that can make it."""
        found: dict[str, tuple[str, str]] = {}
        values = self._values.get(tenant, {})
        for route in (r for r in self.routes if r.method == "GET"):
            path = render_path(route, values)
            if path is None:
                continue
            for person in (p for p in self.config.users if p.tenant == tenant):
                response = await self._send(client, "GET", path, token=self._tokens[person.name])
                if (
                    isinstance(response, httpx.Response)
                    and response.is_success
                    and tenant in self._tenants_in(response.text)
                ):
                    found[path] = (person.name, canonical(response.text))
                    if not route.params:
                        self._listings.add(path)
                    break
        return found

    async def _changes(
        self, client: httpx.AsyncClient, tenant: str, focus: str | None = None
    ) -> list[str]:
        """Paths whose response differs from the tenant's snapshot (then re-taken): its
        listings (routes without parameters), which show any row created, changed or
        deleted, and the read of ``focus``, the object a write aimed at."""
        old = self._snapshots.get(tenant, {})
        changed = []
        for path, (person, body) in old.items():
            if path != focus and path not in self._listings:
                continue
            response = await self._send(client, "GET", path, token=self._tokens[person])
            now = (
                canonical(response.text)
                if isinstance(response, httpx.Response)
                else f"no answer: {response}"
            )
            if now != body:
                changed.append(path)
        if changed:
            self._snapshots[tenant] = await self._snapshot(client, tenant)
        return changed

    async def _controls(self, client: httpx.AsyncClient) -> list[Control]:
        controls = []
        reads = [r for r in self.routes if r.method == "GET"]
        for person in self.config.identities:
            if person.support and person.grant is not GrantState.ACTIVE:
                controls.append(await self._authenticated(client, person, reads))
                continue
            assert person.tenant is not None
            headers = {self.config.support_header: person.tenant} if person.support else {}
            for route in reads:
                path = render_path(route, self._values.get(person.tenant, {}))
                if path is None:
                    continue
                response = await self._send(
                    client, "GET", path, token=self._tokens[person.name], headers=headers
                )
                if isinstance(response, httpx.Response):
                    own = person.tenant in self._tenants_in(response.text)
                    ok = response.is_success and own
                    detail = (
                        ""
                        if ok
                        else (
                            "refused" if not response.is_success else "no own data in the response"
                        )
                    )
                    controls.append(
                        Control(person.name, route.key, response.status_code, ok, detail)
                    )
                else:
                    controls.append(
                        Control(person.name, route.key, None, False, f"no answer: {response}")
                    )
        return controls

    async def _authenticated(
        self, client: httpx.AsyncClient, person: Identity, reads: Sequence[Route]
    ) -> Control:
        """Staff without an active grant: refused as *forbidden* (403), which shows the
        token itself is accepted; a 401 would make every refusal meaningless. (Served is
        accepted too: the support cells then report the leak.)"""
        target = person.tenant or self.config.tenants[0]
        route = next((r for r in reads if not r.params), reads[0])
        path = render_path(route, self._values.get(target, {})) or route.path
        response = await self._send(
            client,
            "GET",
            path,
            token=self._tokens[person.name],
            headers={self.config.support_header: target},
        )
        status = response.status_code if isinstance(response, httpx.Response) else None
        # Served at all is authenticated too (and the support cells will call it a leak).
        ok = status is not None and (status == 403 or 200 <= status < 300)
        detail = (
            ""
            if ok
            else (
                "the token is not accepted (401): a refusal proves nothing"
                if status == 401
                else f"expected 403, got {status}"
            )
        )
        return Control(person.name, route.key, status, ok, detail)

    def _attacks(self) -> list[_Request]:
        config = self.config
        out: list[_Request] = []
        for route in self.routes:
            for victim in config.tenants:
                values = self._values.get(victim, {})
                path = render_path(route, values)
                if path is None:
                    continue
                body = request_body(route, self._canary("attack"))
                victim_ref = {"id": self._tenant_ids.get(victim, victim), "slug": victim}
                for person in config.users:
                    if person.tenant == victim:
                        continue
                    assert person.tenant is not None
                    token = self._tokens[person.name]
                    common = dict(
                        route=route,
                        victim=victim,
                        actor=person.name,
                        actor_tenant=person.tenant,
                        token=token,
                        body=body,
                    )
                    out.append(_Request(attack=Attack.CROSS_IDENTITY, path=path, **common))
                    out.append(
                        _Request(
                            attack=Attack.TENANT_HEADER,
                            path=path,
                            headers=tenant_headers(victim_ref),
                            **common,
                        )
                    )
                    out.append(
                        _Request(
                            attack=Attack.TENANT_QUERY,
                            path=path,
                            query=tenant_query(victim_ref),
                            **common,
                        )
                    )
                    own_path = render_path(route, self._values.get(person.tenant, {}))
                    if route.method in ("POST", "PUT", "PATCH") and own_path is not None:
                        foreign = {
                            **({} if not isinstance(body, dict) else body),
                            "tenant_id": victim_ref["id"],
                            "tenant": victim,
                            **values,
                        }
                        out.append(
                            _Request(
                                **{**common, "body": foreign},
                                attack=Attack.FOREIGN_IDS_IN_BODY,
                                path=own_path,
                            )
                        )
                out.append(
                    _Request(
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
                    own = self._tokens[person.name]
                    resigner = self._resigner
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
                            _Request(
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
    ) -> list[_Request]:
        token = self._tokens[person.name]
        target = {self.config.support_header: victim}
        if person.grant is GrantState.NONE:
            return [
                _Request(
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
                _Request(
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
            _Request(
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
                _Request(
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

    def _untestable(self) -> list[Cell]:
        """Routes a tenant has no object for: listed, so nothing passes unseen."""
        cells = []
        for route in self.routes:
            for victim in self.config.tenants:
                if self._resigner is None:
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
                if render_path(route, self._values.get(victim, {})) is None:
                    missing = [p for p in route.params if p not in self._values.get(victim, {})]
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

    async def _attack(self, client: httpx.AsyncClient, request: _Request) -> Cell:
        response = await self._send(
            client,
            request.route.method,
            request.path,
            token=request.token,
            headers=request.headers,
            params=request.query,
            body=request.body,
        )
        changed: list[str] = []
        if request.route.mutating:
            changed = await self._changes(client, request.victim, request.path)
            if (
                request.actor_tenant
                and isinstance(response, httpx.Response)
                and response.is_success
                and request.actor_tenant != request.victim
            ):
                # its own data, legitimately
                await self._changes(client, request.actor_tenant, request.path)
        outcome, detail = self._judge(request, response, changed)
        status = response.status_code if isinstance(response, httpx.Response) else None
        return Cell(
            request.route.key,
            request.victim,
            request.attack.value,
            request.actor,
            status,
            outcome,
            detail,
        )

    def _judge(
        self, request: _Request, response: httpx.Response | Exception, changed: Sequence[str]
    ) -> tuple[Outcome, str]:
        if changed:
            return Outcome.LEAKED, f"{request.victim}'s data changed: {', '.join(changed)}"
        if not isinstance(response, httpx.Response):
            return Outcome.ERROR, f"no answer: {response}"
        seen = self._tenants_in(response.text) - {request.actor_tenant or ""}
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

    # -- helpers -----------------------------------------------------------------------

    def _canary(self, tenant: str) -> str:
        canary = f"tnc{secrets.token_hex(8)}"
        self._canaries[canary] = tenant
        return canary

    def _tenants_in(self, text: str) -> set[str]:
        return {
            tenant
            for canary, tenant in self._canaries.items()
            if tenant != "attack" and canary in text
        }

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response | Exception:
        self._requests += 1
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            return await client.request(
                method,
                path,
                headers=sent,
                params=params or None,
                json=body if method != "GET" else None,
            )
        except httpx.HTTPError as exc:
            return exc
