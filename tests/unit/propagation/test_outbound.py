"""ContextAuth: every outbound call carries a fresh context token, or is not sent at all."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tenancy.context import TenantContext, bind, current_or_none
from tenancy.errors import InsufficientScope, NoTenantContext
from tenancy.propagation import (
    ContextAuth,
    ContextTokenMinter,
    ContextTokenVerifier,
    context_headers,
)
from tenancy.tenants import Tenant
from tests.unit.propagation.conftest import WORKLOGS, context_of


class Recorder:
    """A transport handler that keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"ok": True})


def bearer_of(request: httpx.Request) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


def test_request_carries_a_verifiable_token_for_the_bound_context(
    minter: ContextTokenMinter, ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext
) -> None:
    sent = Recorder()
    auth = ContextAuth(minter, audience=WORKLOGS, scopes=["worklogs:read"])
    with httpx.Client(transport=httpx.MockTransport(sent), auth=auth) as http, bind(acme_ctx):
        http.get("http://worklogs/worklogs", headers={"Authorization": "Bearer user-token"})
        http.get("http://worklogs/worklogs")
    first, second = (bearer_of(r) for r in sent.requests)
    assert first != second  # one token per call
    assert "user-token" not in first
    verified = ctx_verifier.verify(first)
    assert verified.principal.tenant_id == acme_ctx.tenant_id
    assert verified.principal.scopes == {"worklogs:read"}


def test_without_a_context_nothing_is_sent(minter: ContextTokenMinter) -> None:
    sent = Recorder()
    auth = ContextAuth(minter, audience=WORKLOGS, scopes=["worklogs:read"])
    with (
        httpx.Client(transport=httpx.MockTransport(sent), auth=auth) as http,
        pytest.raises(NoTenantContext),
    ):
        http.get("http://worklogs/worklogs")
    assert sent.requests == []


def test_a_scope_the_caller_lacks_is_refused_before_sending(
    minter: ContextTokenMinter, acme: Tenant
) -> None:
    sent = Recorder()
    auth = ContextAuth(minter, audience=WORKLOGS, scopes=["worklogs:write"])
    reader = context_of(acme, scopes=frozenset({"worklogs:read"}))
    with (
        httpx.Client(transport=httpx.MockTransport(sent), auth=auth) as http,
        bind(reader),
        pytest.raises(InsufficientScope),
    ):
        http.post("http://worklogs/worklogs", json={})
    assert sent.requests == []


def test_tenant_headers_and_baggage_members_are_stripped(
    minter: ContextTokenMinter, acme_ctx: TenantContext
) -> None:
    sent = Recorder()
    auth = ContextAuth(minter, audience=WORKLOGS, scopes=(), strip_headers=["X-Org"])
    headers = {
        "X-Tenant-ID": "globex",
        "x_tenant": "globex",
        "Tenant": "globex",
        "X-Org": "globex",
        "baggage": "tenant=globex,userId=alice",
        "tracestate": "tenant_id=globex",
        "accept": "application/json",
    }
    with httpx.Client(transport=httpx.MockTransport(sent), auth=auth) as http, bind(acme_ctx):
        http.get("http://worklogs/whoami", headers=headers)
    got = sent.requests[0].headers
    assert {k.lower() for k in got} & {
        "x-tenant-id",
        "x_tenant",
        "tenant",
        "x-org",
        "tracestate",
    } == set()
    assert got["baggage"] == "userId=alice"
    assert got["accept"] == "application/json"


def test_stripping_can_be_turned_off_for_a_single_tenant_service(
    minter: ContextTokenMinter, acme_ctx: TenantContext
) -> None:
    sent = Recorder()
    auth = ContextAuth(minter, audience=WORKLOGS, scopes=(), strip_tenant_headers=False)
    with httpx.Client(transport=httpx.MockTransport(sent), auth=auth) as http, bind(acme_ctx):
        http.get("http://worklogs/whoami", headers={"X-Tenant-ID": "acme"})
    assert sent.requests[0].headers["x-tenant-id"] == "acme"


@pytest.mark.anyio
async def test_async_client_uses_each_tasks_own_context(
    minter: ContextTokenMinter, ctx_verifier: ContextTokenVerifier, acme: Tenant, globex: Tenant
) -> None:
    sent = Recorder()
    auth = ContextAuth(minter, audience=WORKLOGS, scopes=["worklogs:read"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(sent), auth=auth) as http:

        async def call_as(tenant: Tenant, n: int) -> None:
            with bind(context_of(tenant)):
                for _ in range(n):
                    await http.get(f"http://worklogs/worklogs?as={tenant.slug}")
                    await asyncio.sleep(0)

        await asyncio.gather(call_as(acme, 20), call_as(globex, 20))
        assert current_or_none() is None
        with pytest.raises(NoTenantContext):
            await http.get("http://worklogs/worklogs")
    assert len(sent.requests) == 40
    expected = {"acme": acme.id, "globex": globex.id}
    for request in sent.requests:
        verified = ctx_verifier.verify(bearer_of(request))
        assert verified.principal.tenant_id == expected[request.url.params["as"]]


def test_with_scopes_makes_an_auth_for_another_call(
    minter: ContextTokenMinter, ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext
) -> None:
    sent = Recorder()
    base = ContextAuth(minter, audience=WORKLOGS, scopes=())
    with httpx.Client(transport=httpx.MockTransport(sent)) as http, bind(acme_ctx):
        http.post("http://worklogs/worklogs", auth=base.with_scopes("worklogs:write"))
    assert ctx_verifier.verify(bearer_of(sent.requests[0])).principal.scopes == {"worklogs:write"}


def test_context_headers_serve_any_client(
    minter: ContextTokenMinter, ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext
) -> None:
    inbound = [
        ("X-Tenant-ID", "globex"),
        ("baggage", "tenant=globex,k=v"),
        ("Authorization", "Bearer user-token"),
        ("Accept", "application/json"),
    ]
    with pytest.raises(NoTenantContext):
        context_headers(minter, audience=WORKLOGS, scopes=["worklogs:read"], headers=inbound)
    with bind(acme_ctx):
        out = context_headers(minter, audience=WORKLOGS, scopes=["worklogs:read"], headers=inbound)
    names = [k for k, _ in out]
    assert names == ["baggage", "Accept", "Authorization"]
    assert dict(out)["baggage"] == "k=v"
    token = dict(out)["Authorization"].removeprefix("Bearer ")
    assert ctx_verifier.verify(token).principal.tenant_id == acme_ctx.tenant_id
