"""The tenant admin console, in-process: who gets in, CSRF, decisions, tenant isolation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

from tenancy.clock import FrozenClock
from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.support import GrantState, MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples.console.app import create_app
from tests.conftest import AUDIENCE, REGION

pytestmark = pytest.mark.anyio

STAFF = "00000000-0000-4000-8000-000000000001"
BASE = "http://console.test"
READ, WRITE = "worklogs:read", "worklogs:write"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def engineer(subject: str = "sam") -> Principal:
    return Principal(
        issuer=DEV_ISSUER,
        tenant_id=STAFF,
        subject=subject,
        kind=PrincipalKind.SUPPORT,
        scopes=frozenset({READ, WRITE}),
        assurance=Assurance.MULTI_FACTOR,
        device_trusted=True,
    )


@pytest.fixture
def access(engine: Engine, clock: FrozenClock) -> SupportAccess:
    support = SupportAccess(
        engine, max_duration=timedelta(hours=8), clock=clock, notifier=MemoryNotifier()
    )
    support.create_schema()
    return support


@pytest.fixture
def console_verifier(keys: JWKSKeySource, clock: FrozenClock) -> TokenVerifier:
    # Support principals verify here (as at the edge), so the console itself must refuse them.
    return TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER,
                audience=AUDIENCE,
                keys=keys,
                algorithms=["EdDSA"],
                kinds=(PrincipalKind.USER, PrincipalKind.SUPPORT),
            )
        ],
        clock=clock,
        leeway=0,
    )


@pytest.fixture
def console(
    console_verifier: TokenVerifier,
    access: SupportAccess,
    registry: TenantRegistry,
    clock: FrozenClock,
) -> Starlette:
    return create_app(
        verifier=console_verifier, support=access, tenants=registry, region=REGION, clock=clock
    )


@pytest.fixture
async def browser(console: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=console), base_url=BASE
    ) as client:
        yield client


@pytest.fixture
def mint(issuer: DevIssuer, clock: FrozenClock) -> Any:
    def _mint(
        tenant: Tenant | str,
        sub: str = "ann",
        *,
        roles: tuple[str, ...] = ("admin",),
        mfa: bool = True,
        **kwargs: Any,
    ) -> str:
        tid = tenant if isinstance(tenant, str) else tenant.id
        kwargs.setdefault("audience", AUDIENCE)
        kwargs.setdefault("now", clock.now())
        return issuer.mint(tenant_id=tid, subject=sub, roles=roles, mfa=mfa, **kwargs)

    return _mint


def request_access(
    access: SupportAccess,
    tenant: Tenant,
    *,
    ticket: str = "T-42",
    scopes: tuple[str, ...] = (READ,),
    hours: int = 2,
) -> str:
    return access.request(
        tenant.id,
        engineer(),
        ticket_id=ticket,
        justification="export fails for the customer",
        scopes=scopes,
        duration=timedelta(hours=hours),
    ).id


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/login")
    assert form.status_code == 200
    csrf = CSRF.search(form.text)
    assert csrf is not None
    return await client.post("/login", data={"csrf": csrf.group(1), "token": token})


async def session_csrf(client: httpx.AsyncClient) -> str:
    page = await client.get("/")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def post(client: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    fields.setdefault("csrf", await session_csrf(client))
    return await client.post(path, data=fields)


async def test_admin_signs_in_and_sees_the_pending_request(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant
) -> None:
    grant_id = request_access(access, acme)
    token = mint(acme)
    signed_in = await sign_in(browser, token)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"

    [cookie] = [c for c in signed_in.headers.get_list("set-cookie") if c.startswith("console=")]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert token not in cookie  # the token stays on the server

    page = await browser.get("/")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="en">' in html and "<main" in html and token not in html
    for shown in (
        "T-42",
        "sam",
        "export fails for the customer",
        READ,
        "2 h",
        f"/grants/{grant_id}/approve",
        f"/grants/{grant_id}/deny",
        f'<label for="duration-{grant_id}"',
        f'<select id="duration-{grant_id}"',
    ):
        assert shown in html
    pending_until = access.get(acme.id, grant_id).pending_until
    assert pending_until.strftime("%Y-%m-%d %H:%M:%S UTC") in html
    assert "content-security-policy" in page.headers
    assert page.headers["cache-control"] == "no-store"
    # The durations offered stop at the requested two hours.
    offered = re.findall(r'<option value="(\d+)"', html)
    assert offered == ["900", "1800", "3600", "7200"]


@pytest.mark.parametrize("who", ["member", "support", "garbage", "wrong audience", "expired"])
async def test_others_are_refused_at_sign_in(
    browser: httpx.AsyncClient, mint: Any, clock: FrozenClock, acme: Tenant, who: str
) -> None:
    token = {
        "member": lambda: mint(acme, "mo", roles=("member",)),
        "support": lambda: mint(
            STAFF, "sam", kind=PrincipalKind.SUPPORT, extra_claims={"trusted_device": True}
        ),
        "garbage": lambda: "not.a.token",
        "wrong audience": lambda: mint(acme, audience="worklogs-elsewhere"),
        "expired": lambda: mint(acme, now=clock.now() - timedelta(hours=1), ttl=60),
    }[who]()
    refused = await sign_in(browser, token)
    assert refused.status_code == (403 if who in ("member", "support") else 401)
    assert "console" not in browser.cookies  # no session was made
    assert (await browser.get("/")).status_code == 303


async def test_admin_of_another_tenant_neither_sees_nor_touches_its_grants(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant, globex: Tenant
) -> None:
    acme_pending = request_access(access, acme, ticket="ACME-1")
    acme_active = request_access(access, acme, ticket="ACME-2")
    approver = Principal(
        issuer=DEV_ISSUER,
        tenant_id=acme.id,
        subject="ann",
        roles=frozenset({"admin"}),
        assurance=Assurance.MULTI_FACTOR,
    )
    access.approve(acme.id, acme_active, approver, duration=timedelta(hours=1))
    assert (await sign_in(browser, mint(globex, "gina"))).status_code == 303

    page = await browser.get("/")
    assert "Globex" in page.text and "ACME-1" not in page.text and "ACME-2" not in page.text
    assert (await browser.get(f"/grants/{acme_pending}")).status_code == 404
    for grant_id, action, fields in [
        (acme_pending, "approve", {"duration": "3600"}),
        (acme_pending, "deny", {"reason": "no"}),
        (acme_active, "revoke", {"reason": "no"}),
    ]:
        answer = await post(browser, f"/grants/{grant_id}/{action}", **fields)
        assert answer.status_code == 404
        assert acme_pending not in answer.text
    assert access.get(acme.id, acme_pending).state is GrantState.PENDING
    assert access.get(acme.id, acme_active).state is GrantState.APPROVED
    assert [e["action"] for e in access.trail(acme.id, acme_active)] == ["requested", "approved"]


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
async def test_posts_without_the_sessions_csrf_token_change_nothing(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant, csrf: str | None
) -> None:
    grant_id = request_access(access, acme)
    await sign_in(browser, mint(acme))
    for action, fields in [("approve", {"duration": "3600"}), ("deny", {"reason": "no"})]:
        if csrf is not None:
            fields["csrf"] = csrf
        answer = await browser.post(f"/grants/{grant_id}/{action}", data=fields)
        assert answer.status_code == 403
    logout = await browser.post("/logout", data={} if csrf is None else {"csrf": csrf})
    assert logout.status_code == 403
    assert access.get(acme.id, grant_id).state is GrantState.PENDING
    assert (await browser.get("/")).status_code == 200  # still signed in


async def test_sign_in_form_needs_its_csrf_token(
    browser: httpx.AsyncClient, mint: Any, acme: Tenant
) -> None:
    await browser.get("/login")
    forged = await browser.post("/login", data={"csrf": "x" * 64, "token": mint(acme)})
    assert forged.status_code == 403
    assert "console" not in browser.cookies


async def test_approve_with_a_chosen_duration_and_without_writes(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, clock: FrozenClock, acme: Tenant
) -> None:
    grant_id = request_access(access, acme, scopes=(READ, WRITE), hours=4)
    await sign_in(browser, mint(acme))
    assert 'name="allow_write"' in (await browser.get("/")).text
    answer = await post(browser, f"/grants/{grant_id}/approve", duration="3600")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    grant = access.get(acme.id, grant_id)
    assert grant.state is GrantState.APPROVED and grant.duration == timedelta(hours=1)
    assert grant.scopes == {READ}  # no consent to writes, so none granted
    assert grant.decided_by == "ann" and grant.expires_at() == clock.now() + timedelta(hours=1)
    page = await browser.get("/")
    assert "Approved ticket T-42" in page.text and 'role="status"' in page.text
    assert f"/grants/{grant_id}/revoke" in page.text  # now listed as active


async def test_approve_with_consent_to_writes(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant
) -> None:
    grant_id = request_access(access, acme, scopes=(READ, WRITE))
    await sign_in(browser, mint(acme))
    await post(browser, f"/grants/{grant_id}/approve", duration="7200", allow_write="yes")
    assert access.get(acme.id, grant_id).scopes == {READ, WRITE}


@pytest.mark.parametrize("duration", ["10800", "32400", "abc", ""])
async def test_a_duration_not_offered_is_refused(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant, duration: str
) -> None:
    grant_id = request_access(access, acme, hours=2)
    await sign_in(browser, mint(acme))
    answer = await post(browser, f"/grants/{grant_id}/approve", duration=duration)
    assert answer.status_code == 303
    assert "offered durations" in (await browser.get("/")).text
    assert access.get(acme.id, grant_id).state is GrantState.PENDING


async def test_approval_without_mfa_shows_the_refusal_and_stays_pending(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant
) -> None:
    grant_id = request_access(access, acme)
    await sign_in(browser, mint(acme, mfa=False))
    first = await browser.get("/")
    assert "without multi-factor authentication" in first.text
    answer = await post(browser, f"/grants/{grant_id}/approve", duration="3600")
    assert answer.status_code == 303
    page = await browser.get("/")
    assert page.status_code == 200
    alert = re.search(r'<p class="flash error" role="alert">([^<]*)</p>', page.text)
    assert alert is not None and "needs MFA" in alert.group(1) and "T-42" in alert.group(1)
    assert "Traceback" not in page.text
    assert access.get(acme.id, grant_id).state is GrantState.PENDING
    # The message is shown once (POST-redirect-GET), not on every later page.
    assert "needs MFA" not in (await browser.get("/")).text


async def test_deny_with_a_reason(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant
) -> None:
    grant_id = request_access(access, acme)
    await sign_in(browser, mint(acme))
    empty = await post(browser, f"/grants/{grant_id}/deny", reason="  ")
    assert empty.status_code == 303 and "give a reason" in (await browser.get("/")).text
    assert access.get(acme.id, grant_id).state is GrantState.PENDING
    await post(browser, f"/grants/{grant_id}/deny", reason="not for this ticket <b>")
    assert access.get(acme.id, grant_id).state is GrantState.DENIED
    trail = await browser.get(f"/grants/{grant_id}")
    assert "denied" in trail.text and "not for this ticket &lt;b&gt;" in trail.text


async def test_revoke_and_read_the_trail(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant
) -> None:
    grant_id = request_access(access, acme)
    await sign_in(browser, mint(acme))
    await post(browser, f"/grants/{grant_id}/approve", duration="3600")
    access.record_use(access.get(acme.id, grant_id), request_id="req-7", route="/worklogs")
    await post(browser, f"/grants/{grant_id}/revoke", reason="work is done")
    grant = access.get(acme.id, grant_id)
    assert grant.state is GrantState.REVOKED and grant.revoked_by == "ann"
    trail = await browser.get(f"/grants/{grant_id}")
    assert trail.status_code == 200
    steps = re.findall(r"<td>(requested|approved|used|revoked)</td>", trail.text)
    assert steps == ["requested", "approved", "used", "revoked"]
    assert "req-7" in trail.text and "/worklogs" in trail.text and "work is done" in trail.text
    assert '<th scope="col">' in trail.text
    # Revoking again is a refusal shown on the page, not an error.
    await post(browser, f"/grants/{grant_id}/revoke", reason="again")
    assert "only an active grant can be revoked" in (await browser.get("/")).text


async def test_an_expired_token_sends_the_admin_back_to_sign_in(
    browser: httpx.AsyncClient, mint: Any, clock: FrozenClock, acme: Tenant
) -> None:
    await sign_in(browser, mint(acme, ttl=300))
    assert (await browser.get("/")).status_code == 200
    clock.advance(301)
    page = await browser.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login?ended=1"
    assert "Your session ended" in (await browser.get("/login?ended=1")).text


async def test_sign_out_ends_the_session(
    browser: httpx.AsyncClient, mint: Any, acme: Tenant
) -> None:
    await sign_in(browser, mint(acme))
    session = browser.cookies["console"]
    out = await post(browser, "/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    browser.cookies.set("console", session)  # replaying the old cookie does not help
    assert (await browser.get("/")).status_code == 303


async def test_a_suspended_tenants_admin_is_refused(
    browser: httpx.AsyncClient, mint: Any, registry: TenantRegistry, acme: Tenant
) -> None:
    await sign_in(browser, mint(acme))
    registry.suspend(acme.id, actor="test", reason="unpaid")
    refused = await browser.get("/")
    assert refused.status_code == 403 and 'role="alert"' in refused.text


async def test_only_forms_of_the_page_are_read(
    browser: httpx.AsyncClient, mint: Any, access: SupportAccess, acme: Tenant
) -> None:
    grant_id = request_access(access, acme)
    await sign_in(browser, mint(acme))
    csrf = await session_csrf(browser)
    answer = await browser.post(
        f"/grants/{grant_id}/approve", json={"csrf": csrf, "duration": "3600"}
    )
    assert answer.status_code == 415
    unknown = await post(browser, f"/grants/{grant_id}/delete")
    assert unknown.status_code == 404
    assert access.get(acme.id, grant_id).state is GrantState.PENDING
