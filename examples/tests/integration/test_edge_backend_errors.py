"""The edge's aiohttp client against a real uvicorn backend that fails: a backend's 500 is
passed on, and the next request is not lost with the connection the backend closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import DownstreamUnavailable
from tenancy.propagation import ContextTokenMinter, ServiceKeyring
from tenancy_examples.edge.backends import AiohttpBackend
from tests.support.browser import serve

pytestmark = pytest.mark.anyio
TENANT = "11111111-1111-4111-8111-111111111111"


async def crashing_backend(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /boom`` answers a complete 500, then raises, as Starlette's error middleware
    does; uvicorn then closes the connection (after logging the traceback: the pause).
    Any other request takes a while, as a database write does, so a request sent on the
    same connection is still running when that connection is closed."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] != "/boom":
        await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Internal Server Error"})
    await asyncio.sleep(0.1)
    raise RuntimeError("the backend failed after answering")


@pytest.fixture
def backend_url() -> Any:
    with serve(crashing_backend) as url:
        yield url


async def test_request_after_a_backend_500_is_not_a_502(backend_url: str) -> None:
    edge = AiohttpBackend(
        backend_url, minter=ContextTokenMinter(ServiceKeyring.generate("edge")), audience="worklogs"
    )
    principal = Principal(
        "https://issuer.test", TENANT, "alice", scopes=frozenset({"worklogs:write"})
    )
    try:
        with bind(TenantContext(TENANT, "acme", "eu-central-1", principal, "rid")):
            for _ in range(3):
                failed = await edge.forward(
                    "POST",
                    "/boom",
                    "",
                    b"{}",
                    {"content-type": "application/json"},
                    ["worklogs:write"],
                )
                assert failed.status == 500  # passed on as the backend said it
                try:
                    after = await edge.forward(
                        "POST",
                        "/ok",
                        "",
                        b"{}",
                        {"content-type": "application/json"},
                        ["worklogs:write"],
                    )
                except DownstreamUnavailable as exc:  # the edge would answer 502
                    pytest.fail(f"the request after a backend 500 was lost: {exc!r}")
                assert after.status == 201
    finally:
        await edge.aclose()
