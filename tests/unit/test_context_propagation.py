"""The context reaches every place a handler's work runs, and never another request."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from tenancy.context import current, current_or_none, run_in_executor, wrap
from tenancy.identity import TokenVerifier
from tenancy.middleware import TenancyMiddleware
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer

pytestmark = pytest.mark.anyio

TENANTS = 10
REQUESTS = 1_000


class Observations:
    """What each request expected vs. what each place of execution saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def record(self, place: str, expected: str) -> None:
        ctx = current_or_none()
        with self.lock:
            self.seen.append((place, expected, ctx.tenant_id if ctx else None))

    def mismatches(self) -> list[tuple[str, str, str | None]]:
        return [s for s in self.seen if s[1] != s[2]]


def probe_app(
    verifier: TokenVerifier, registry: TenantRegistry, obs: Observations, stall: asyncio.Event
) -> Any:
    executor = ThreadPoolExecutor(max_workers=4)

    async def handler(request: Request) -> Any:
        expected = request.query_params["expect"]
        obs.record("handler", expected)
        await asyncio.sleep(random.random() / 1000)
        if request.query_params.get("stall"):
            await stall.wait()  # never set: this request will be cancelled here
        task = asyncio.create_task(asyncio.sleep(0, result=None))
        await task
        await asyncio.create_task(_record_later(obs, expected))
        await run_in_threadpool(obs.record, "run_in_threadpool", expected)
        await asyncio.to_thread(obs.record, "to_thread", expected)
        await run_in_executor(executor, obs.record, "run_in_executor", expected)
        thread = threading.Thread(target=wrap(obs.record), args=("wrapped_thread", expected))
        thread.start()
        await asyncio.to_thread(thread.join)
        background = BackgroundTask(obs.record, "background_task", expected)
        if request.query_params.get("stream"):
            return StreamingResponse(_stream(obs, expected), background=background)
        return JSONResponse({"tenant": current().tenant_id}, background=background)

    inner = Starlette(routes=[Route("/probe", handler)])
    return TenancyMiddleware(inner, verifier=verifier, tenants=registry, region=REGION)


async def _record_later(obs: Observations, expected: str) -> None:
    await asyncio.sleep(0)
    obs.record("asyncio_task", expected)


async def _stream(obs: Observations, expected: str) -> AsyncIterator[bytes]:
    for i in range(3):
        await asyncio.sleep(0)
        obs.record("streaming_body", expected)
        yield f"{i}\n".encode()


@pytest.fixture
def tenants(registry: TenantRegistry) -> list[Tenant]:
    return [registry.provision(f"tenant-{i}", region=REGION) for i in range(TENANTS)]


async def test_thousand_concurrent_requests_each_see_only_their_tenant(
    verifier: TokenVerifier,
    registry: TenantRegistry,
    tenants: list[Tenant],
    token_for: TokenFactory,
) -> None:
    obs = Observations()
    app = probe_app(verifier, registry, obs, asyncio.Event())
    tokens = {t.id: token_for(t, sub=f"user-{t.slug}") for t in tenants}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:

        async def one(i: int) -> None:
            tenant = tenants[i % TENANTS]
            stream = "1" if i % 3 == 0 else ""
            response = await client.get(
                "/probe",
                params={"expect": tenant.id, "stream": stream},
                headers=bearer(tokens[tenant.id]),
            )
            assert response.status_code == 200

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))

    assert obs.mismatches() == []
    places = {place for place, _, _ in obs.seen}
    assert places == {
        "handler",
        "asyncio_task",
        "run_in_threadpool",
        "to_thread",
        "run_in_executor",
        "wrapped_thread",
        "background_task",
        "streaming_body",
    }
    assert sum(1 for p, _, _ in obs.seen if p == "background_task") == REQUESTS
    assert current_or_none() is None


async def test_cancelled_requests_leak_nothing(
    verifier: TokenVerifier,
    registry: TenantRegistry,
    tenants: list[Tenant],
    token_for: TokenFactory,
) -> None:
    obs = Observations()
    stall = asyncio.Event()
    app = probe_app(verifier, registry, obs, stall)
    tokens = {t.id: token_for(t) for t in tenants}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:

        async def one(i: int) -> str:
            tenant = tenants[i % TENANTS]
            stalled = i % 4 == 0  # a quarter of the requests are cancelled mid-handler
            request = client.get(
                "/probe",
                params={"expect": tenant.id, "stall": "1" if stalled else ""},
                headers=bearer(tokens[tenant.id]),
            )
            try:
                response = await asyncio.wait_for(request, timeout=0.5 if stalled else 30)
            except TimeoutError:
                assert current_or_none() is None
                return "cancelled"
            assert response.json() == {"tenant": tenant.id}
            return "served"

        outcomes = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        assert outcomes.count("cancelled") == REQUESTS // 4
        # After the cancellations, every tenant is still served as itself.
        after = await asyncio.gather(*(one(i * 4 + 1) for i in range(TENANTS * 5)))
        assert set(after) == {"served"}

    assert obs.mismatches() == []
    assert current_or_none() is None


async def test_cancellation_in_the_same_task_unbinds_the_context(
    verifier: TokenVerifier,
    registry: TenantRegistry,
    tenants: list[Tenant],
    token_for: TokenFactory,
) -> None:
    # Run the ASGI app directly in this task (no task boundary that would hide a leak).
    obs = Observations()
    app = probe_app(verifier, registry, obs, asyncio.Event())
    tenant = tenants[0]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/probe",
        "raw_path": b"/probe",
        "query_string": f"expect={tenant.id}&stall=1".encode(),
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token_for(tenant)}".encode())],
        "scheme": "http",
        "server": ("t", 80),
        "client": ("c", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await app(scope, receive, send)
    assert [s for s in obs.seen if s[0] == "handler"] == [("handler", tenant.id, tenant.id)]
    assert current_or_none() is None


async def test_raw_run_in_executor_does_not_propagate_but_the_helper_does(
    verifier: TokenVerifier, acme: Tenant
) -> None:
    from tenancy.context import Principal, TenantContext, bind

    ctx = TenantContext(
        tenant_id=acme.id,
        tenant_slug="acme",
        region=REGION,
        principal=Principal(issuer="i", tenant_id=acme.id, subject="s"),
        request_id="r",
    )
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as pool, bind(ctx):
        raw = await loop.run_in_executor(pool, current_or_none)
        helped = await run_in_executor(pool, current_or_none)
    assert raw is None
    assert helped == ctx
