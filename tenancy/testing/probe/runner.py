"""The probe: seed data as every identity, prove each reaches its own, then attack.

1. **Seed.** Every identity sends every seed route, with a unique *canary* string in the
   body; captured path parameters (ids, link tokens) name the tenant's objects.
2. **Snapshot.** Each tenant's data-bearing reads (responses holding its canaries).
3. **Positive controls.** Every identity must read its own tenant's data; support staff
   with an active grant must read the grant's tenant; staff without one must at least be
   authenticated (403, not 401). Any failure makes the run *void*: refusals prove nothing
   if nothing is ever allowed.
4. **Attacks.** Every route, for every victim tenant, as every other tenant's identity,
   with tampered credentials and as support staff without a valid grant for the victim
   (:mod:`.attacks` lists them and says how each answer is judged).

Reads run concurrently; writes run one at a time, each followed by a look at the victim,
so a change is pinned to the request that made it.

This module is the run: its phases and the state they share (tokens, captured ids,
snapshots). What is attacked is :mod:`.attacks`; what is sent, and the canaries that
show whose data a response holds, is :mod:`.traffic`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx

from tenancy.errors import ProbeConfigError
from tenancy.testing.probe.attacks import AttackPlan, AttackRequest, judge
from tenancy.testing.probe.config import GrantState, Identity, ProbeConfig, Route
from tenancy.testing.probe.report import Cell, Control, ProbeReport, void_reasons
from tenancy.testing.probe.routes import merge
from tenancy.testing.probe.shaping import canonical, captured, render_path, request_body
from tenancy.testing.probe.tokens import Resigner, claims, obtain
from tenancy.testing.probe.traffic import Traffic


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
        self._snapshots: dict[str, dict[str, tuple[str, str]]] = {}
        self._listings: set[str] = set()
        self._traffic = Traffic()
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
            plan = AttackPlan(
                config=self.config,
                routes=self.routes,
                tokens=self._tokens,
                tenant_ids=self._tenant_ids,
                values=self._values,
                resigner=self._resigner,
                canary=self._traffic.canary,
            )
            requests = plan.requests()
            reads = [r for r in requests if not r.route.mutating]
            writes = sorted(
                (r for r in requests if r.route.mutating), key=lambda r: r.route.method == "DELETE"
            )
            limit = asyncio.Semaphore(self.config.concurrency)

            async def bounded(request: AttackRequest) -> Cell:
                async with limit:
                    return await self._attack(client, request)

            cells += await asyncio.gather(*(bounded(r) for r in reads))
            for request in writes:
                cells.append(await self._attack(client, request))
            cells += plan.untestable()
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
            requests=self._traffic.requests,
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
                canary = self._traffic.canary(person.tenant)
                response = await self._traffic.send(
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
                response = await self._traffic.send(
                    client, "GET", path, token=self._tokens[person.name]
                )
                if (
                    isinstance(response, httpx.Response)
                    and response.is_success
                    and tenant in self._traffic.tenants_in(response.text)
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
            response = await self._traffic.send(client, "GET", path, token=self._tokens[person])
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
                response = await self._traffic.send(
                    client, "GET", path, token=self._tokens[person.name], headers=headers
                )
                if isinstance(response, httpx.Response):
                    own = person.tenant in self._traffic.tenants_in(response.text)
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
        response = await self._traffic.send(
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

    async def _attack(self, client: httpx.AsyncClient, request: AttackRequest) -> Cell:
        response = await self._traffic.send(
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
        outcome, detail = judge(request, response, changed, tenants_in=self._traffic.tenants_in)
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
