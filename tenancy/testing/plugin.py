"""pytest plugin: tenants, identities and tokens for a service's own suite, and the probe.

Installed with tenancy (entry point ``pytest11``), so its fixtures are there in any suite::

    @pytest.fixture
    def tenancy_roles():  # your service's roles and scopes (admin, member, viewer)
        return {"admin": Role(("notes:read", "notes:write"), mfa=True),
                "member": Role(("notes:read", "notes:write")), "viewer": Role(("notes:read",))}

    def test_notes_are_isolated(assert_isolated, tenancy_verifier, tenancy_registry):
        app = create_app(verifier=tenancy_verifier, tenants=tenancy_registry, ...)
        assert_isolated(app, routes={"POST /notes": {"body": {"text": "{canary}"},
                                                      "seed": True, "capture": {"id": "id"}}})

With the plugin, consistency mode (``TENANCY_CONSISTENCY_CHECKS``) is on for the whole
session unless the environment says otherwise.

Fixtures (override any of them in a ``conftest.py``): ``tenancy_region``,
``tenancy_audience``, ``tenancy_issuer`` (a dev issuer in a temporary directory),
``tenancy_verifier``, ``tenancy_registry`` (SQLite), ``tenancy_tenant_slugs`` (acme,
globex), ``tenancy_roles``, ``tenancy_tenants``, ``tenancy_identities`` (one per tenant and
role), ``tenancy_token`` (mint more), ``as_tenant`` and ``assert_isolated``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from tenancy.context import Assurance, Principal, TenantContext, bind
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.settings import CONSISTENCY_CHECKS_ENV
from tenancy.tenants import Tenant, TenantRegistry
from tenancy.testing.probe import (
    Identity,
    ProbeConfig,
    ProbeReport,
    Route,
    TokenSource,
    run_probe,
)
from tenancy.testing.probe.config import SUPPORT_TARGET_HEADER, route_entry
from tenancy.testing.probe.report import Outcome
from tenancy.testing.probe.routes import routes_from_app, routes_from_openapi


@dataclass(frozen=True, slots=True)
class Role:
    """The scopes a test identity of this role holds, and whether it signed in with MFA."""

    scopes: tuple[str, ...] = ()
    mfa: bool = False


@dataclass(frozen=True, slots=True)
class TestIdentity:
    """One signed-in test user: ``name`` (``<tenant>-<role>``), its tenant, its role and a
    bearer token the test issuer minted for it."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    name: str
    tenant: Tenant
    role: str
    token: str


@contextmanager
def as_tenant(
    tenant: Tenant,
    *,
    subject: str = "test",
    roles: Sequence[str] = (),
    scopes: Sequence[str] = (),
    region: str | None = None,
) -> Iterator[TenantContext]:
    """Bind a context for ``tenant`` around library code under test (sessions, keys)."""
    ctx = TenantContext(
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        region=region or tenant.region,
        principal=Principal(
            issuer=DEV_ISSUER,
            tenant_id=tenant.id,
            subject=subject,
            roles=frozenset(roles),
            scopes=frozenset(scopes),
            assurance=Assurance.SINGLE_FACTOR,
        ),
        request_id=f"test-{uuid.uuid4().hex[:12]}",
    )
    with bind(ctx):
        yield ctx


def check_isolation(
    app: Any,
    identities: Sequence[TestIdentity],
    *,
    routes: Mapping[str, Mapping[str, Any]] | None = None,
    exclude: Sequence[str] = ("/healthz",),
    staff: Sequence[Identity] = (),
    discover: bool = True,
    support_header: str | None = None,
) -> ProbeReport:
    """Probe the ASGI ``app`` in-process with ``identities`` and return the report.

    ``routes`` takes the shape of a probe.toml's ``[routes]`` table; with ``discover``
    the app's own routes are probed too (:func:`discover_routes`: a FastAPI app's from its
    OpenAPI document). Runs in a worker thread with its own event
    loop, so it works from sync and async tests alike.
    """
    config = ProbeConfig(
        identities=(
            *(Identity(i.name, i.tenant.slug, TokenSource(value=i.token)) for i in identities),
            *staff,
        ),
        routes=tuple(route_entry(key, value) for key, value in (routes or {}).items()),
        exclude=tuple(exclude),
        tenant_ids={i.tenant.slug: i.tenant.id for i in identities},
        support_header=support_header or SUPPORT_TARGET_HEADER,
    )
    found: list[Route] = discover_routes(app, exclude=exclude) if discover else []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, run_probe(config, app=app, discovered=found)).result()


def discover_routes(app: Any, *, exclude: Sequence[str] = ()) -> list[Route]:
    """The routes of ``app`` to probe: from the OpenAPI document it makes itself when it
    has one (FastAPI's ``app.openapi()``: every operation, with its JSON body example;
    operations declaring ``security: []`` are public and left out), else from its route
    table (Starlette). Paths in ``exclude`` are left out either way."""
    make_document = getattr(app, "openapi", None)
    if callable(make_document):
        document = make_document()
        if isinstance(document, Mapping):
            skipped = set(exclude)
            return [r for r in routes_from_openapi(document) if r.path not in skipped]
    return routes_from_app(app, exclude=exclude)


def assert_isolated_report(report: ProbeReport) -> None:
    """Fail with every leaked cell (or why the run proves nothing)."""
    problems = [f"VOID: {reason}" for reason in report.void_reasons]
    problems += [
        f"LEAKED {c.route} victim={c.victim} attack={c.attack} actor={c.actor} "
        f"status={c.status}: {c.detail}"
        for c in report.leaks
    ]
    problems += [
        f"ERROR {c.route} victim={c.victim} attack={c.attack} actor={c.actor}: {c.detail}"
        for c in report.cells
        if c.outcome is Outcome.ERROR
    ]
    if problems:
        raise AssertionError("tenant isolation probe failed:\n" + "\n".join(problems))


def pytest_configure(config: pytest.Config) -> None:
    """Consistency mode is on in tests: every ``TenancyMiddleware`` built in the session
    (and every process it starts, which inherits the environment) checks that its layers
    name one tenant. ``TENANCY_CONSISTENCY_CHECKS=0 pytest`` turns it off."""
    os.environ.setdefault(CONSISTENCY_CHECKS_ENV, "1")


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def tenancy_region() -> str:
    """The region test tenants are provisioned in (override to test residency)."""
    return "eu-central-1"


@pytest.fixture
def tenancy_audience() -> str:
    """The audience test tokens carry and ``tenancy_verifier`` requires."""
    return "tenancy-tests"


@pytest.fixture
def tenancy_issuer(tmp_path: Path) -> DevIssuer:
    """A development issuer whose signing key lives in the test's temporary directory: its
    tokens are trusted by ``tenancy_verifier`` only, never by a real deployment."""
    return DevIssuer.load_or_create(tmp_path / "tenancy-issuer")


@pytest.fixture
def tenancy_verifier(tenancy_issuer: DevIssuer, tenancy_audience: str) -> TokenVerifier:
    """A verifier that trusts only ``tenancy_issuer`` for ``tenancy_audience``, with EdDSA
    as the sole allowed algorithm."""
    keys = JWKSKeySource(tenancy_issuer.jwks, algorithms=["EdDSA"])
    return TokenVerifier(
        [
            trusted_issuer(
                tenancy_issuer.issuer, audience=tenancy_audience, keys=keys, algorithms=["EdDSA"]
            )
        ]
    )


@pytest.fixture
def tenancy_registry(tmp_path: Path) -> Iterator[TenantRegistry]:
    """A tenant registry on a fresh SQLite file in the test's temporary directory; its
    engine is disposed after the test."""
    engine = create_engine(f"sqlite:///{tmp_path / 'tenancy-registry.db'}")
    registry = TenantRegistry(engine)
    registry.create_schema()
    yield registry
    engine.dispose()


@pytest.fixture
def tenancy_tenant_slugs() -> tuple[str, ...]:
    """The slugs of the tenants provisioned for each test: two, so every isolation check has
    a victim and an attacker."""
    return ("acme", "globex")


@pytest.fixture
def tenancy_roles() -> Mapping[str, Role]:
    """Override with your service's roles and scopes."""
    return {"admin": Role(mfa=True), "member": Role(), "viewer": Role()}


@pytest.fixture
def tenancy_tenants(
    tenancy_registry: TenantRegistry, tenancy_tenant_slugs: Sequence[str], tenancy_region: str
) -> dict[str, Tenant]:
    """Provision each of ``tenancy_tenant_slugs`` in ``tenancy_region``; slug -> tenant."""
    return {
        slug: tenancy_registry.provision(slug, region=tenancy_region)
        for slug in tenancy_tenant_slugs
    }


@pytest.fixture
def tenancy_token(tenancy_issuer: DevIssuer, tenancy_audience: str) -> Callable[..., str]:
    """``tenancy_token(tenant, sub="alice", roles=(), scopes=(), mfa=False, **mint_kwargs)``."""

    def mint(tenant: Tenant, sub: str = "alice", **kwargs: Any) -> str:
        kwargs.setdefault("audience", tenancy_audience)
        return tenancy_issuer.mint(tenant_id=tenant.id, subject=sub, **kwargs)

    return mint


@pytest.fixture
def tenancy_identities(
    tenancy_tenants: Mapping[str, Tenant],
    tenancy_roles: Mapping[str, Role],
    tenancy_token: Callable[..., str],
) -> list[TestIdentity]:
    """One identity per tenant and role, named ``<tenant>-<role>``."""
    return [
        TestIdentity(
            f"{slug}-{role}",
            tenant,
            role,
            tenancy_token(
                tenant, sub=f"{slug}-{role}", roles=[role], scopes=spec.scopes, mfa=spec.mfa
            ),
        )
        for slug, tenant in tenancy_tenants.items()
        for role, spec in tenancy_roles.items()
    ]


@pytest.fixture(name="as_tenant")
def as_tenant_fixture(
    tenancy_tenants: Mapping[str, Tenant],
) -> Callable[..., Any]:
    """``with as_tenant("acme"): ...`` binds a context for a provisioned tenant."""

    def enter(slug: str, **kwargs: Any) -> Any:
        return as_tenant(tenancy_tenants[slug], **kwargs)

    return enter


@pytest.fixture(name="assert_isolated")
def assert_isolated_fixture(
    tenancy_identities: Sequence[TestIdentity],
) -> Callable[..., ProbeReport]:
    """``assert_isolated(app, routes={...}, exclude=(...), staff=[...])``: probe the app
    in-process as every identity; fail listing every leak; return the report."""

    def check(app: Any, **kwargs: Any) -> ProbeReport:
        report = check_isolation(app, tenancy_identities, **kwargs)
        assert_isolated_report(report)
        return report

    return check
