"""Consistency mode: every layer of a request names the verified tenant, or it fails closed.

A small notes app behind ``TenancyMiddleware``: writing a note goes through the policy,
the ORM (``TenantSession``), the key service (``TenantKeys.encrypt``) and the context-token
minter. Each attack makes one layer name another tenant; with checks on the request is a
500 ``tenant-layer-mismatch`` problem, a ``consistency.violation`` event, and nothing of
it reaches the database. With checks off, the same bugs leak: the tests can fail.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine, LargeBinary, String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tenancy import consistency
from tenancy.authz import Action, Authorizer, Decision
from tenancy.clock import FrozenClock
from tenancy.context import Assurance, Principal, PrincipalKind, TenantContext, bind, current
from tenancy.errors import ConfigurationError, LayerMismatch
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.keys import Binding, DataKeyCache, LocalKeyProvider, RootKey, TenantKeys
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.propagation import ContextTokenMinter, ServiceKeyring
from tenancy.scoping import TenantScoped, TenantSession, orm, system_scope
from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer
from tests.isolation.mutants.trusting_middleware import TrustingMiddleware
from tests.support.scoping_models import ctx as context_for

pytestmark = pytest.mark.anyio

ALL_LAYERS = {"token", "context", "policy", "db", "keys", "propagation"}
STAFF = "00000000-0000-4000-8000-000000000001"


class Base(DeclarativeBase):
    pass


class Note(TenantScoped, Base):
    __tablename__ = "consistency_notes"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    body: Mapped[str] = mapped_column(String(200))
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class AllowAll:
    """A decision point that allows everything and keeps every input it was asked."""

    name = "allow-all"
    revision = 1

    def __init__(self) -> None:
        self.inputs: list[Mapping[str, Any]] = []

    def decide(self, input: Mapping[str, Any]) -> Decision:
        self.inputs.append(input)
        return Decision(allow=True)


@dataclass
class Sabotage:
    """What a buggy handler does; each field makes one layer name another tenant."""

    binding_tenant: str | None = None  # encrypt for this tenant instead of the context's
    policy_ctx: Callable[[TenantContext], TenantContext] | None = None
    mint_ctx: Callable[[TenantContext], TenantContext] | None = None
    swallow: bool = False  # catch the mismatch and answer 200 anyway


@dataclass
class Harness:
    engine: Engine
    keys: TenantKeys
    pdp: AllowAll
    authorizer: Authorizer
    minter: ContextTokenMinter
    sessions: sessionmaker[TenantSession]
    sabotage: Sabotage = field(default_factory=Sabotage)
    checks: list[consistency.LayerCheck | None] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, bytes | None]]:
        """Every note as stored, read past the scoping layer."""
        with self.engine.connect() as conn:
            found = conn.execute(
                text("SELECT tenant_id, body, sealed FROM consistency_notes ORDER BY body")
            )
            return [(r.tenant_id, r.body, r.sealed) for r in found]


@pytest.fixture
def harness(
    engine: Engine,
    tmp_path: Path,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
) -> Harness:
    Base.metadata.create_all(engine)
    root = RootKey.load_or_create(tmp_path / "keys" / "root.key")
    keys = TenantKeys(
        engine,
        [LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root)],
        cache=DataKeyCache(ttl=60),
        clock=clock,
        events=events,
    )
    keys.create_schema()
    keys.provision(acme.id)
    keys.provision(globex.id)
    # Warm acme's data key: SQLite allows one writer, and handlers encrypt mid-transaction.
    keys.encrypt(b"warm", Binding(acme.id, "warm", "warm", "warm"))
    pdp = AllowAll()
    return Harness(
        engine=engine,
        keys=keys,
        pdp=pdp,
        authorizer=Authorizer(pdp, service="notes", clock=clock),
        minter=ContextTokenMinter(ServiceKeyring.generate("edge", clock=clock), clock=clock),
        sessions=sessionmaker(engine, class_=TenantSession, expire_on_commit=False),
    )


def build_app(
    h: Harness,
    *,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    middleware: type[TenancyMiddleware] = TenancyMiddleware,
    checks: bool | None = True,
    **options: Any,
) -> Starlette:
    async def list_notes(request: Request) -> Response:
        with h.sessions() as session:
            notes = [n.body for n in session.scalars(select(Note).order_by(Note.body))]
        h.checks.append(consistency.active())
        return JSONResponse({"tenant": current().tenant_slug, "notes": notes})

    async def create_note(request: Request) -> Response:
        payload = json.loads(await request.body())
        try:
            ctx = current()
            sabotage = h.sabotage
            policy_ctx = ctx if sabotage.policy_ctx is None else sabotage.policy_ctx(ctx)
            await h.authorizer.authorize(policy_ctx, Action.named("notes.create"))
            note = Note(id=str(uuid.uuid4()), body=payload["body"])
            with h.sessions() as session:
                session.add(note)
                session.flush()  # the row is written inside the transaction from here on
                binding = Binding(
                    sabotage.binding_tenant or ctx.tenant_id, "consistency_notes", "sealed", note.id
                )
                note.sealed = h.keys.encrypt(payload["body"].encode(), binding)
                session.commit()
            mint_ctx = ctx if sabotage.mint_ctx is None else sabotage.mint_ctx(ctx)
            h.minter.mint(mint_ctx, audience="worklogs", scopes=())
        except LayerMismatch:
            if not h.sabotage.swallow:
                raise
            return JSONResponse({"ok": "the handler pretends all is well"})
        h.checks.append(consistency.active())
        return JSONResponse({"id": note.id}, status_code=201)

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk of acme's data;"
            h.keys.encrypt(
                b"x",
                Binding(
                    h.sabotage.binding_tenant or current().tenant_id,
                    "consistency_notes",
                    "sealed",
                    "s",
                ),
            )
            yield b"never sent"

        return StreamingResponse(chunks())

    routes = [
        Route("/notes", list_notes, methods=["GET"]),
        Route("/notes", create_note, methods=["POST"]),
        Route("/stream", stream, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(
                cast(Any, middleware),
                verifier=verifier,
                tenants=registry,
                region=REGION,
                events=events,
                authorizer=h.authorizer,
                routes=routes,
                consistency_checks=checks,
                **options,
            )
        ],
    )


@pytest.fixture
def app(
    harness: Harness, verifier: TokenVerifier, registry: TenantRegistry, events: MemorySink
) -> Starlette:
    return build_app(harness, verifier=verifier, registry=registry, events=events)


async def call(
    app: Starlette,
    method: str,
    path: str,
    token: str,
    *,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://notes"
    ) as client:
        return await client.request(
            method,
            path,
            headers={**bearer(token), **(headers or {})},
            content=None if body is None else json.dumps({"body": body}),
        )


def violations(events: MemorySink) -> list[Any]:
    return [e for e in events.events if e.action == "consistency.violation"]


def assert_mismatch_problem(response: httpx.Response, *secret_ids: str) -> None:
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "tenant-layer-mismatch"
    assert problem["type"] == "urn:tenancy:problem:tenant-layer-mismatch"
    assert "detail" not in problem  # which tenants disagreed is for the audit trail only
    for secret in secret_ids:
        assert secret not in response.text


def other(tenant: Tenant) -> Callable[[TenantContext], TenantContext]:
    """A context like the request's, but for ``tenant`` (principal included)."""
    return lambda ctx: replace(
        ctx,
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        principal=replace(ctx.principal, tenant_id=tenant.id),
    )


# -- the check itself ------------------------------------------------------------------


def test_observe_with_no_check_bound_does_nothing() -> None:
    assert consistency.active() is None
    consistency.observe("db", "tenant-a")
    consistency.observe("db", "tenant-b")  # two tenants, nobody checking: no error
    assert consistency.active() is None


def test_a_check_records_its_layers_and_refuses_another_tenant_for_good() -> None:
    check = consistency.LayerCheck("tenant-a")
    token = consistency.enter(check)
    try:
        consistency.observe("context", "tenant-a")
        consistency.observe("db", "tenant-a")
        with pytest.raises(LayerMismatch) as refused:
            consistency.observe("keys", "tenant-b")
        assert (
            refused.value.expected_layer,
            refused.value.expected_tenant_id,
            refused.value.layer,
            refused.value.tenant_id,
        ) == ("token", "tenant-a", "keys", "tenant-b")
        # The request stays failed: even its own tenant is refused from now on.
        with pytest.raises(LayerMismatch):
            consistency.observe("db", "tenant-a")
    finally:
        consistency.leave(token)
    assert check.layers == {"token", "context", "db"}
    assert check.violation is refused.value
    assert consistency.active() is None


def test_system_scope_work_is_not_flagged() -> None:
    check = consistency.LayerCheck("tenant-a")
    token = consistency.enter(check)
    try:
        with system_scope("retention test"):
            consistency.observe("db", "tenant-b")  # tenant-less work visits every tenant
        with pytest.raises(LayerMismatch):
            consistency.observe("db", "tenant-b")  # and the check is back after it
    finally:
        consistency.leave(token)


def test_the_setting_turns_the_mode_on(
    monkeypatch: pytest.MonkeyPatch,
    harness: Harness,
    verifier: TokenVerifier,
    registry: TenantRegistry,
) -> None:
    def built(value: str) -> TenancyMiddleware:
        monkeypatch.setenv("TENANCY_CONSISTENCY_CHECKS", value)
        return TenancyMiddleware(Starlette(), verifier=verifier, tenants=registry, region=REGION)

    assert built("1")._consistency and built("on")._consistency
    assert not built("0")._consistency and not built("")._consistency
    with pytest.raises(ConfigurationError):
        built("maybe")  # never guessed: refused at construction


# -- clean requests --------------------------------------------------------------------


async def test_clean_request_records_every_layer_and_succeeds(
    app: Starlette, harness: Harness, acme: Tenant, token_for: TokenFactory, events: MemorySink
) -> None:
    created = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert created.status_code == 201, created.text
    listed = await call(app, "GET", "/notes", token_for(acme))
    assert listed.json() == {"tenant": "acme", "notes": ["acme note"]}
    write_check, read_check = harness.checks
    assert write_check is not None and read_check is not None
    assert write_check.tenant_id == acme.id and write_check.violation is None
    assert write_check.layers == ALL_LAYERS
    assert read_check.layers >= {"token", "context", "policy", "db"}
    assert [i["tenant"]["id"] for i in harness.pdp.inputs] == [acme.id] * len(harness.pdp.inputs)
    assert violations(events) == []
    assert consistency.active() is None  # unbound after the request


async def test_with_checks_off_no_check_is_bound(
    harness: Harness,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    acme: Tenant,
    token_for: TokenFactory,
) -> None:
    app = build_app(harness, verifier=verifier, registry=registry, events=events, checks=False)
    assert (await call(app, "GET", "/notes", token_for(acme))).status_code == 200
    assert harness.checks == [None]


async def test_support_under_a_grant_is_checked_against_the_grants_tenant(
    harness: Harness,
    keys: JWKSKeySource,
    registry: TenantRegistry,
    engine: Engine,
    issuer: DevIssuer,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
) -> None:
    support = SupportAccess(
        engine,
        max_duration=timedelta(hours=8),
        clock=clock,
        events=events,
        notifier=MemoryNotifier(),
    )
    support.create_schema()
    engineer = Principal(
        issuer=DEV_ISSUER,
        tenant_id=STAFF,
        subject="sam",
        kind=PrincipalKind.SUPPORT,
        scopes=frozenset({"notes:read"}),
        assurance=Assurance.MULTI_FACTOR,
        device_trusted=True,
    )
    admin = Principal(
        issuer=DEV_ISSUER,
        tenant_id=acme.id,
        subject="ann",
        roles=frozenset({"admin"}),
        assurance=Assurance.MULTI_FACTOR,
    )
    grant = support.request(
        acme.id,
        engineer,
        ticket_id="T-1",
        justification="j",
        scopes=("notes:read",),
        duration=timedelta(hours=2),
    )
    support.approve(acme.id, grant.id, admin)
    verifier = TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER,
                audience="worklogs",
                keys=keys,
                algorithms=["EdDSA"],
                kinds=(PrincipalKind.USER, PrincipalKind.SUPPORT),
            )
        ],
        clock=clock,
    )
    app = build_app(
        harness, verifier=verifier, registry=registry, events=events, support=support, clock=clock
    )
    staff = issuer.mint(
        tenant_id=STAFF,
        subject="sam",
        audience="worklogs",
        scopes=("notes:read",),
        mfa=True,
        kind=PrincipalKind.SUPPORT,
        now=clock.now(),
        extra_claims={"trusted_device": True},
    )
    response = await call(app, "GET", "/notes", staff, headers={"x-support-target": "acme"})
    assert response.status_code == 200, response.text
    (check,) = harness.checks
    assert check is not None
    # The token names the staff tenant; the token layer is the grant's tenant.
    assert check.tenant_id == acme.id != STAFF
    assert check.layers >= {"token", "context", "policy", "db"}
    assert violations(events) == []


# -- each layer disagreeing fails closed ---------------------------------------------------


async def test_encrypting_for_another_tenant_is_refused_and_nothing_is_stored(
    app: Starlette,
    harness: Harness,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    harness.sabotage.binding_tenant = globex.id
    response = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert_mismatch_problem(response, globex.id, acme.id)
    # The row was flushed before the encrypt: the mismatch rolled its transaction back.
    assert harness.rows() == []
    assert harness.keys.status(globex.id).data_keys == ()  # no key was even made for globex
    (event,) = violations(events)
    assert event.tenant_id == acme.id
    assert dict(event.details) == {
        "code": "tenant-layer-mismatch",
        "expected_layer": "token",
        "expected_tenant_id": acme.id,
        "layer": "keys",
        "tenant_id": globex.id,
    }


async def test_orm_scoped_to_another_tenant_is_refused_and_nothing_is_written(
    app: Starlette,
    harness: Harness,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broken scoping layer: it reads the tenant from somewhere other than the request.
    monkeypatch.setattr(orm, "current_or_none", lambda: other(globex)(current()))
    response = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert_mismatch_problem(response, globex.id)
    assert harness.rows() == []
    assert [e.details["layer"] for e in violations(events)] == ["db"]


async def test_orm_scoped_to_another_tenant_leaks_with_checks_off(
    harness: Harness,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = build_app(harness, verifier=verifier, registry=registry, events=events, checks=False)
    monkeypatch.setattr(orm, "current_or_none", lambda: other(globex)(current()))
    response = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert response.status_code == 201  # the broken layer goes unnoticed...
    assert [r[0] for r in harness.rows()] == [globex.id]  # ...and wrote into globex


@pytest.mark.parametrize("who", ["tenant", "principal"])
async def test_policy_input_naming_another_tenant_is_refused_before_the_engine(
    app: Starlette,
    harness: Harness,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
    who: str,
) -> None:
    def principal_only(ctx: TenantContext) -> TenantContext:
        return replace(ctx, principal=replace(ctx.principal, tenant_id=globex.id))

    harness.sabotage.policy_ctx = other(globex) if who == "tenant" else principal_only
    response = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert_mismatch_problem(response, globex.id)
    assert all(globex.id not in json.dumps(i) for i in harness.pdp.inputs)  # never asked
    assert harness.rows() == []
    assert [e.details["layer"] for e in violations(events)] == ["policy"]


async def test_minting_a_context_token_for_another_tenant_is_refused(
    app: Starlette,
    harness: Harness,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    harness.sabotage.mint_ctx = other(globex)
    response = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert_mismatch_problem(response, globex.id)
    assert [e.details["layer"] for e in violations(events)] == ["propagation"]


async def test_a_handler_that_swallows_the_mismatch_still_answers_500(
    app: Starlette,
    harness: Harness,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    harness.sabotage.binding_tenant = globex.id
    harness.sabotage.swallow = True
    response = await call(app, "POST", "/notes", token_for(acme), body="acme note")
    assert_mismatch_problem(response)
    assert "pretends" not in response.text
    assert harness.rows() == []
    assert len(violations(events)) == 1


async def test_a_mismatch_after_the_response_started_aborts_it(
    app: Starlette,
    harness: Harness,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    events: MemorySink,
) -> None:
    harness.sabotage.binding_tenant = globex.id
    with pytest.raises(Exception) as aborted:  # the server drops the connection mid-body
        await call(app, "GET", "/stream", token_for(acme))
    # Starlette wraps an error raised after the response started; the cause is ours.
    assert isinstance(aborted.value, LayerMismatch) or isinstance(
        aborted.value.__cause__, LayerMismatch
    )
    assert [e.details["layer"] for e in violations(events)] == ["keys"]


# -- a middleware that trusts a tenant header (the mutant) --------------------------------


@pytest.fixture
def seeded(harness: Harness, acme: Tenant, globex: Tenant) -> Harness:
    """Each tenant has one note; globex's is the secret the mutant can leak."""
    for tenant, body in ((acme, "acme note"), (globex, "globex secret")):
        with (
            bind(replace(context_for(tenant.id), tenant_slug=tenant.slug)),
            harness.sessions() as session,
        ):
            session.add(Note(id=str(uuid.uuid4()), body=body))
            session.commit()
    return harness


@pytest.mark.parametrize("claim", ["id", "slug"])
async def test_header_trusting_middleware_is_refused_with_checks_on(
    seeded: Harness,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
    claim: str,
) -> None:
    app = build_app(
        seeded, verifier=verifier, registry=registry, events=events, middleware=TrustingMiddleware
    )
    value = globex.id if claim == "id" else globex.slug
    response = await call(app, "GET", "/notes", token_for(acme), headers={"X-Tenant-ID": value})
    assert_mismatch_problem(response, "globex secret", globex.id)
    assert seeded.checks == []  # refused before the app ran
    (event,) = violations(events)
    assert (
        event.details["expected_tenant_id"],
        event.details["layer"],
        event.details["tenant_id"],
    ) == (acme.id, "context", globex.id)
    # Without the header the mutant behaves, so the refusal is about the header.
    plain = await call(app, "GET", "/notes", token_for(acme))
    assert plain.json() == {"tenant": "acme", "notes": ["acme note"]}


async def test_header_trusting_middleware_leaks_with_checks_off(
    seeded: Harness,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
    token_for: TokenFactory,
) -> None:
    headers = {"x-tenant-id": globex.slug}
    mutant = build_app(
        seeded,
        verifier=verifier,
        registry=registry,
        events=events,
        middleware=TrustingMiddleware,
        checks=False,
    )
    leaked = await call(mutant, "GET", "/notes", token_for(acme), headers=headers)
    assert leaked.json() == {"tenant": "globex", "notes": ["globex secret"]}  # really broken
    real = build_app(seeded, verifier=verifier, registry=registry, events=events, checks=False)
    safe = await call(real, "GET", "/notes", token_for(acme), headers=headers)
    assert safe.json() == {"tenant": "acme", "notes": ["acme note"]}
