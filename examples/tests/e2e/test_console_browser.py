"""The admin console in a real headless Chromium, deciding access that worklogs enforces.

The console and the worklogs service run in-process under uvicorn on loopback, over one
database and one ``SupportAccess``: what the admin clicks in the browser is what the
worklogs middleware reads on the support engineer's very next request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tenancy.authz import Authorizer, EmbeddedRego
from tenancy.context import PrincipalKind
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples import policy
from tenancy_examples.console.app import create_app as create_console
from tenancy_examples.worklogs.app import create_app as create_worklogs
from tenancy_examples.worklogs.store import WorklogStore
from tests.conftest import REGION
from tests.support.browser import (
    chromium_page,
    descendants,
    ensure_chromium,
    serve,
    still_running,
)

pytestmark = pytest.mark.e2e

STAFF = "00000000-0000-4000-8000-000000000001"
TICKET = "SUP-981"
READ = "worklogs:read"


def verifier_for(keys: JWKSKeySource, audience: str) -> TokenVerifier:
    return TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER,
                audience=audience,
                keys=keys,
                algorithms=["EdDSA"],
                kinds=(PrincipalKind.USER, PrincipalKind.SUPPORT),
            )
        ]
    )


@pytest.fixture
def servers(
    engine: Engine, keys: JWKSKeySource, registry: TenantRegistry, store: WorklogStore
) -> Iterator[tuple[str, str, SupportAccess]]:
    ensure_chromium()  # skip (or fail in CI) before starting anything
    access = SupportAccess(engine, notifier=MemoryNotifier())
    access.create_schema()
    bundle = policy.bundle()
    worklogs = create_worklogs(
        store=store,
        verifier=verifier_for(keys, "worklogs"),
        tenants=registry,
        region=REGION,
        support=access,
        authorizer=Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle),
    )
    console = create_console(
        verifier=verifier_for(keys, "console"), support=access, tenants=registry, region=REGION
    )
    with serve(worklogs) as worklogs_url, serve(console) as console_url:
        yield console_url, worklogs_url, access


def test_admin_approves_and_revokes_support_access_in_the_browser(
    servers: tuple[str, str, SupportAccess],
    issuer: DevIssuer,
    keys: JWKSKeySource,
    acme: Tenant,
    tmp_path: Path,
) -> None:
    console_url, worklogs_url, access = servers
    as_worklogs = verifier_for(keys, "worklogs")
    engineer_token = issuer.mint(
        tenant_id=STAFF,
        subject="sam",
        audience="worklogs",
        kind=PrincipalKind.SUPPORT,
        scopes=[READ],
        mfa=True,
        extra_claims={"trusted_device": True},
    )
    engineer = as_worklogs.verify(engineer_token).principal
    grant = access.request(
        acme.id,
        engineer,
        ticket_id=TICKET,
        justification="the weekly export is empty",
        scopes=[READ],
        duration=timedelta(hours=4),
    )
    as_support = {"Authorization": f"Bearer {engineer_token}", "x-support-target": "acme"}

    def engineer_reads() -> httpx.Response:
        return httpx.get(f"{worklogs_url}/worklogs", headers=as_support, timeout=10)

    refused = engineer_reads()
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "urn:tenancy:problem:no-active-grant"

    admin_token = issuer.mint(
        tenant_id=acme.id, subject="ann", audience="console", roles=["admin"], mfa=True
    )
    # Processes that already ran before the browser (servers, leftovers of other tests)
    # are not the browser's: only what appears with it must be gone after it.
    before_browser = descendants()
    with chromium_page() as page:
        page.goto(f"{console_url}/login")
        assert page.locator("html").get_attribute("lang") == "en"
        page.get_by_label("Access token").fill(admin_token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Support access to Acme").wait_for()

        pending = page.get_by_role("table", name=re.compile("waiting for your decision"))
        row = pending.get_by_role("row", name=re.compile(TICKET))
        for shown in ("sam", "the weekly export is empty", READ, "4 h"):
            assert shown in row.inner_text()
        page.get_by_label(f"Duration for ticket {TICKET}").select_option(label="1 h")
        page.get_by_role("button", name=f"Approve ticket {TICKET}").click()
        page.get_by_role("status").filter(has_text=f"Approved ticket {TICKET}").wait_for()
        active = page.get_by_role("table", name=re.compile("reach your organisation"))
        assert TICKET in active.inner_text()
        assert access.get(acme.id, grant.id).duration == timedelta(hours=1)

        served = engineer_reads()
        assert served.status_code == 200, served.text
        assert served.json() == {"items": [], "next": None}

        page.get_by_label(f"Reason to revoke ticket {TICKET}").fill("export fixed")
        page.get_by_role("button", name=f"Revoke ticket {TICKET}").click()
        page.get_by_role("status").filter(has_text=f"Revoked access for ticket {TICKET}").wait_for()
        assert page.get_by_text("No active grants.").is_visible()

        after = engineer_reads()
        assert after.status_code == 403, after.text
        as_worklogs.verify(engineer_token)  # still valid: only the grant ended

        page.get_by_role("link", name=TICKET).click()
        page.get_by_role("heading", name=f"Trail of ticket {TICKET}").wait_for()
        trail = page.get_by_role("table", name=re.compile("trail"))
        steps = [cell.strip() for cell in trail.locator("tbody td:nth-child(4)").all_inner_texts()]
        assert steps == ["requested", "approved", "used", "revoked"]
        text = trail.inner_text()
        assert "ann" in text and "/worklogs" in text and "export fixed" in text
        shot = tmp_path / "console-trail.png"
        page.screenshot(path=str(shot), full_page=True)
        browser_processes = descendants() - before_browser
        assert browser_processes, "the browser runs as this process's descendant"
    assert shot.stat().st_size > 1000
    assert still_running(browser_processes) == set(), "the browser outlived the test"
