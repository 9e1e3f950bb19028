"""Enforcement: fail closed on every engine failure, cache by input and revision, log all."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenancy.authz import (
    Action,
    Authorizer,
    Decision,
    DecisionCache,
    EmbeddedRego,
    JsonLinesDecisionLog,
    MemoryDecisionLog,
    PolicyBundle,
    Resource,
    mask,
)
from tenancy.authz.policytests import fixture_bundle
from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import (
    AccessDenied,
    ConfigurationError,
    DecisionUnavailable,
    NoTenantContext,
)
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER, TokenVerifier
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer
from tests.support.tenant_app import EntryStore, create_app

pytestmark = pytest.mark.anyio
GET_WORKLOGS = Action.http("GET", "/worklogs")


class Counting:
    """Wraps a decision point and counts how often it is really asked."""

    name = "counting"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def revision(self) -> int:
        return int(self.inner.revision)

    def decide(self, input: Mapping[str, Any]) -> Decision:
        self.calls += 1
        return self.inner.decide(input)  # type: ignore[no-any-return]


class Broken:
    """A decision point that fails in a chosen way."""

    name = "broken"
    revision = 1

    def __init__(self, how: str) -> None:
        self.how = how
        self.release = threading.Event()

    def decide(self, input: Mapping[str, Any]) -> Decision:
        if self.how == "raise":
            raise RuntimeError("engine crashed")
        if self.how == "unavailable":
            raise DecisionUnavailable("engine down")
        self.release.wait(5)  # "hang": longer than the authorizer's deadline
        return Decision(allow=True)


def ctx_for(
    tenant: Tenant,
    *,
    roles: frozenset[str] = frozenset({"member"}),
    scopes: frozenset[str] = frozenset({"worklogs:read"}),
) -> TenantContext:
    principal = Principal(
        issuer=DEV_ISSUER, tenant_id=tenant.id, subject="alice", roles=roles, scopes=scopes
    )
    return TenantContext(tenant.id, tenant.slug, REGION, principal, "rid")


@pytest.fixture
def bundle() -> PolicyBundle:
    return fixture_bundle()


def app_with(
    authorizer: Authorizer,
    store: EntryStore,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
) -> Any:
    return create_app(
        store=store,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        events=events,
        authorizer=authorizer,
    )


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def _client(app: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://worklogs"
        )
        clients.append(client)
        return client

    yield _client
    for client in clients:
        await client.aclose()


# -- fail closed -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["raise", "unavailable", "hang"])
async def test_engine_failure_is_a_503_and_the_handler_never_runs(
    how: str,
    serve: Any,
    store: EntryStore,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    broken = Broken(how)
    authorizer = Authorizer(broken, service="worklogs", timeout=0.2)
    client = serve(app_with(authorizer, store, verifier, registry, events))
    body = {"description": "x", "minutes": 5, "day": "2026-11-20"}
    try:
        response = await client.post("/worklogs", json=body, headers=bearer(token_for(acme)))
    except RuntimeError:
        pytest.fail("an engine exception escaped the middleware")
    finally:
        broken.release.set()
    assert response.status_code == 503
    assert response.json()["type"] == "urn:tenancy:problem:decision-unavailable"
    assert events.actions()[-1] == "authz.unavailable"
    with bind(ctx_for(acme)):
        assert store.list() == []


@pytest.mark.parametrize(
    "policy",
    [
        "package tenancy.authz\n",  # no decision at all: undefined
        'package tenancy.authz\ndecision := {"allow": "yes"}\n',
        'package tenancy.authz\ndecision := {"allow": 1, "reasons": []}\n',
        "package tenancy.authz\ndecision := true\n",
        'package tenancy.authz\ndecision := {"allow": true, "reasons": ["x"]}\n',
        'package tenancy.authz\ndecision := {"allow": true, "valid_until": "soon"}\n',
    ],
)
async def test_undefined_or_malformed_decision_is_unavailable(policy: str, acme: Tenant) -> None:
    bundle = PolicyBundle({"authz.rego": policy}, {})
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs")
    with pytest.raises(DecisionUnavailable):
        await authorizer.authorize(ctx_for(acme), GET_WORKLOGS)


async def test_policy_that_does_not_compile_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError):
        EmbeddedRego(PolicyBundle({"authz.rego": "package tenancy.authz\ndecision := {"}, {}))


async def test_deny_is_access_denied_with_reasons_for_the_log_only(
    serve: Any,
    bundle: PolicyBundle,
    store: EntryStore,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle)
    client = serve(app_with(authorizer, store, verifier, registry, events))
    guest = bearer(token_for(acme, roles=["guest"]))
    response = await client.get("/worklogs", headers=guest)
    assert response.status_code == 403
    assert response.json() == {
        "type": "urn:tenancy:problem:access-denied",
        "title": "Forbidden",
        "status": 403,
        "code": "access-denied",
        "instance": "/worklogs",
    }
    assert events.events[-1].action == "authz.denied"
    assert events.events[-1].reason == "scope_not_granted"


async def test_unknown_path_is_404_before_any_decision(
    serve: Any,
    store: EntryStore,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    counting = Counting(EmbeddedRego(fixture_bundle()))
    client = serve(
        app_with(Authorizer(counting, service="worklogs"), store, verifier, registry, events)
    )
    response = await client.get("/admin/keys", headers=bearer(token_for(acme)))
    assert response.status_code == 404
    assert counting.calls == 0


async def test_authorizer_needs_routes_in_the_middleware(
    verifier: TokenVerifier, registry: TenantRegistry
) -> None:
    from starlette.applications import Starlette

    from tenancy.middleware import TenancyMiddleware

    authorizer = Authorizer(EmbeddedRego(fixture_bundle()), service="x")
    with pytest.raises(ConfigurationError):
        TenancyMiddleware(
            Starlette(), verifier=verifier, tenants=registry, region=REGION, authorizer=authorizer
        )


# -- cache -----------------------------------------------------------------------------


async def test_removed_role_takes_effect_on_the_very_next_request(
    serve: Any,
    bundle: PolicyBundle,
    store: EntryStore,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    bundle.bind_roles(acme.id, "alice", ["member"])
    counting = Counting(EmbeddedRego(bundle))
    client = serve(
        app_with(
            Authorizer(counting, service="worklogs", bundle=bundle),
            store,
            verifier,
            registry,
            events,
        )
    )
    alice = bearer(token_for(acme))
    assert (await client.get("/worklogs", headers=alice)).status_code == 200
    assert (await client.get("/worklogs", headers=alice)).status_code == 200
    assert counting.calls == 1  # the second answer came from the cache

    bundle.unbind_roles(acme.id, "alice")
    refused = await client.get("/worklogs", headers=alice)  # same token, very next request
    assert refused.status_code == 403
    assert counting.calls == 2


async def test_cache_is_keyed_by_everything_but_time(
    bundle: PolicyBundle, acme: Tenant, globex: Tenant, clock: FrozenClock
) -> None:
    counting = Counting(EmbeddedRego(bundle))
    authorizer = Authorizer(counting, service="worklogs", bundle=bundle, clock=clock)
    reader = ctx_for(acme)
    await authorizer.decide(reader, GET_WORKLOGS)
    clock.advance(10)
    await authorizer.decide(reader, GET_WORKLOGS)  # only time moved: cached
    assert counting.calls == 1
    variants = [
        (ctx_for(acme, scopes=frozenset()), GET_WORKLOGS, None, "active"),
        (ctx_for(globex), GET_WORKLOGS, None, "active"),
        (reader, Action.http("POST", "/worklogs"), None, "active"),
        (reader, GET_WORKLOGS, Resource(tenant_id=globex.id), "active"),
        (reader, GET_WORKLOGS, None, "suspended"),
    ]
    answers = []
    for ctx, action, resource, status in variants:
        answers.append(
            (await authorizer.decide(ctx, action, resource=resource, tenant_status=status)).allow
        )
    assert counting.calls == 1 + len(variants)
    assert answers == [False, True, False, False, False]


async def test_decision_is_not_reused_after_its_valid_until(
    acme: Tenant, clock: FrozenClock
) -> None:
    class Expiring:
        name = "expiring"
        revision = 1
        calls = 0

        def decide(self, input: Mapping[str, Any]) -> Decision:
            Expiring.calls += 1
            return Decision(allow=True, valid_until=input["now"] + 5)

    authorizer = Authorizer(
        Expiring(), service="worklogs", clock=clock, cache=DecisionCache(max_age=3600)
    )
    await authorizer.decide(ctx_for(acme), GET_WORKLOGS)
    clock.advance(4)
    await authorizer.decide(ctx_for(acme), GET_WORKLOGS)
    assert Expiring.calls == 1
    clock.advance(1)
    await authorizer.decide(ctx_for(acme), GET_WORKLOGS)
    assert Expiring.calls == 2


async def test_no_cache_asks_the_engine_every_time_and_a_flag_is_refused(
    bundle: PolicyBundle, acme: Tenant
) -> None:
    counting = Counting(EmbeddedRego(bundle))
    authorizer = Authorizer(counting, service="worklogs", cache=None)
    for _ in range(2):
        await authorizer.decide(ctx_for(acme), GET_WORKLOGS)
    assert counting.calls == 2
    for flag in (True, False):
        with pytest.raises(ConfigurationError):
            Authorizer(counting, service="worklogs", cache=flag)  # type: ignore[arg-type]


def test_decision_made_under_old_data_is_not_cached() -> None:
    cache = DecisionCache()
    cache.invalidate(5)
    cache.put("k", Decision(allow=True, revision=4), now=0)
    assert cache.get("k", now=1) is None
    cache.put("k", Decision(allow=True, revision=5), now=0)
    assert cache.get("k", now=1) is not None


# -- finer decisions in handlers ---------------------------------------------------------


async def test_handler_decision_refuses_and_nothing_is_deleted(
    serve: Any,
    bundle: PolicyBundle,
    store: EntryStore,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    token_for: TokenFactory,
    acme: Tenant,
) -> None:
    bundle.set(("tenancy", "actions", "worklogs.delete"), {"scopes": ["worklogs:admin"]})
    client = serve(
        app_with(
            Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle),
            store,
            verifier,
            registry,
            events,
        )
    )
    alice = bearer(token_for(acme, roles=["member"]))
    created = await client.post(
        "/worklogs", json={"description": "x", "minutes": 5, "day": "2026-11-20"}, headers=alice
    )
    assert created.status_code == 201
    refused = await client.delete(f"/worklogs/{created.json()['id']}", headers=alice)
    assert refused.status_code == 403
    assert (await client.get(f"/worklogs/{created.json()['id']}", headers=alice)).status_code == 200

    bundle.set(("tenancy", "actions", "worklogs.delete"), {"scopes": ["worklogs:write"]})
    assert (
        await client.delete(f"/worklogs/{created.json()['id']}", headers=alice)
    ).status_code == 204


async def test_authorize_outside_a_request_fails_closed(acme: Tenant) -> None:
    from tenancy.authz import authorize

    with pytest.raises(NoTenantContext):
        await authorize("worklogs.delete")
    with bind(ctx_for(acme)), pytest.raises(DecisionUnavailable):
        await authorize("worklogs.delete")


async def test_authorizer_enforces_for_another_tenants_resource(
    bundle: PolicyBundle, acme: Tenant, globex: Tenant
) -> None:
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs")
    with pytest.raises(AccessDenied) as denied:
        await authorizer.authorize(
            ctx_for(acme),
            Action.named("worklogs.delete"),
            resource=Resource(tenant_id=globex.id, type="worklog"),
        )
    assert denied.value.reasons == ("scope_not_granted", "tenant_mismatch")


# -- decision log ------------------------------------------------------------------------


async def test_every_decision_is_logged_with_masked_input(
    tmp_path: Path, bundle: PolicyBundle, acme: Tenant
) -> None:
    log = JsonLinesDecisionLog(tmp_path / "decisions.jsonl")
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle, log=log)
    secret = Resource(
        tenant_id=acme.id, type="worklog", attributes=(("api_token", "s3cr3t"), ("colour", "blue"))
    )
    await authorizer.decide(ctx_for(acme), GET_WORKLOGS, resource=secret)
    await authorizer.decide(ctx_for(acme), GET_WORKLOGS, resource=secret)
    await authorizer.decide(ctx_for(acme), Action.http("GET", "/nowhere"))
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    full = [r for r in lines if "decision_id" in r]
    repeats = [r for r in lines if "cached_from" in r]
    assert [(r["cached"], r["result"]["allow"]) for r in full] == [(False, True), (False, False)]
    # The cache hit repeats the first decision: one line naming it, with a count.
    assert [(r["cached_from"], r["count"], r["allow"]) for r in repeats] == [
        (full[0]["decision_id"], 1, True)
    ]
    first = full[0]
    assert first["input"]["resource"]["attributes"] == {"api_token": "***", "colour": "blue"}
    assert "s3cr3t" not in (tmp_path / "decisions.jsonl").read_text()
    assert first["revision"] == bundle.revision and first["engine"] == "embedded-rego"
    assert first["bundle"] == bundle.bundle_revision  # which policies and data decided
    assert first["latency_us"] > 0 and first["service"] == "worklogs"
    assert full[1]["result"]["reasons"] == ["action_not_declared"]


def test_hits_are_counted_per_decision_they_repeat(tmp_path: Path) -> None:
    from tenancy.authz import DecisionRecord

    log = JsonLinesDecisionLog(tmp_path / "d.jsonl", interval=3600)  # one drain, at close
    original = Decision(allow=True, decision_id="p-1")
    for i in range(500):
        log.record(
            DecisionRecord(
                at=1000.0 + i,
                service="s",
                decision=original,
                cached=True,
                latency_us=0,
                input=lambda: {},
            )
        )
    log.close()
    (line,) = (tmp_path / "d.jsonl").read_text().splitlines()
    repeat = json.loads(line)
    assert (repeat["cached_from"], repeat["count"]) == ("p-1", 500)
    assert repeat["first"] < repeat["last"]


def test_close_writes_everything_recorded(tmp_path: Path, acme: Tenant) -> None:
    from tenancy.authz import DecisionRecord

    log = JsonLinesDecisionLog(tmp_path / "d.jsonl")
    for i in range(2000):
        log.record(
            DecisionRecord(
                at=time.time(),
                service="s",
                decision=Decision(allow=True),
                cached=True,
                latency_us=0,
                input=lambda i=i: {"n": i},
            )
        )
    log.close()
    numbers = [
        json.loads(line)["input"]["n"] for line in (tmp_path / "d.jsonl").read_text().splitlines()
    ]
    assert numbers == list(range(2000))


def test_mask_hides_secret_keys_at_any_depth() -> None:
    masked = mask(
        {
            "a": {"Authorization": "Bearer x", "list": [{"password": "p", "ok": 1}]},
            "client_secret": "s",
            "subject": "alice",
        }
    )
    assert masked == {
        "a": {"Authorization": "***", "list": [{"password": "***", "ok": 1}]},
        "client_secret": "***",
        "subject": "alice",
    }


async def test_memory_log_records_hits_and_misses(bundle: PolicyBundle, acme: Tenant) -> None:
    log = MemoryDecisionLog()
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs", log=log)
    for _ in range(3):
        await authorizer.decide(ctx_for(acme), GET_WORKLOGS)
    assert [r.cached for r in log.records] == [False, True, True]


async def test_revocation_empties_the_cache_even_when_another_listener_fails(
    bundle: PolicyBundle, acme: Tenant
) -> None:
    bundle.bind_roles(acme.id, "alice", ["member"])

    def failing_push(_: PolicyBundle) -> None:
        raise DecisionUnavailable("opa unreachable")

    bundle.subscribe(failing_push)  # runs before the engine and the cache hear of changes
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle)
    assert (await authorizer.decide(ctx_for(acme), GET_WORKLOGS)).allow
    with pytest.raises(DecisionUnavailable):
        bundle.unbind_roles(acme.id, "alice")
    assert not (await authorizer.decide(ctx_for(acme), GET_WORKLOGS)).allow
