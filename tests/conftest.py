"""Shared fixtures: a dev issuer, a tenant registry, a small tenant-isolated app
(``tests/support/tenant_app.py``), and clients. The examples' tests
(``examples/tests/conftest.py``) reuse the ones that name no app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine

from tenancy.clock import FrozenClock
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.tenants import Tenant, TenantRegistry
from tests.support.tenant_app import EntryStore, create_app

REGION = "eu-central-1"
AUDIENCE = "worklogs"
ALL_SCOPES = ("worklogs:read", "worklogs:write")

# Consistency mode is on for the whole test session (the tenancy.testing plugin turns it
# on, as in staging): every TenancyMiddleware built in tests, and the demo processes e2e
# tests start, check that token, context, policy, database, keys and propagation name one
# tenant. ``TENANCY_CONSISTENCY_CHECKS=0 pytest`` runs the suite with it off.


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A test whose fixture chose an async flavour (``tests.support.asyncflavour``) runs
    inside SQLAlchemy's greenlet on that fixture's event loop."""
    runner = getattr(pyfuncitem, "async_runner", None)
    if runner is None:
        return None
    names = pyfuncitem._fixtureinfo.argnames
    runner.run(pyfuncitem.obj, **{name: pyfuncitem.funcargs[name] for name in names})
    return True


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def events() -> MemorySink:
    return MemorySink()


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path / "issuer")


@pytest.fixture
def keys(issuer: DevIssuer, tmp_path: Path) -> JWKSKeySource:
    return JWKSKeySource.from_file(
        tmp_path / "issuer" / "dev-issuer-jwks.json", algorithms=["EdDSA"]
    )


@pytest.fixture
def verifier(keys: JWKSKeySource) -> TokenVerifier:
    return TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=AUDIENCE, keys=keys, algorithms=["EdDSA"])]
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'tenancy.db'}")
    yield eng
    eng.dispose()


@pytest.fixture
def registry(engine: Engine, events: MemorySink) -> TenantRegistry:
    reg = TenantRegistry(engine, events=events, cache_ttl=60)
    reg.create_schema()
    return reg


@pytest.fixture
def acme(registry: TenantRegistry) -> Tenant:
    return registry.provision("acme", region=REGION, display_name="Acme")


@pytest.fixture
def globex(registry: TenantRegistry) -> Tenant:
    return registry.provision("globex", region=REGION, display_name="Globex")


@pytest.fixture
def store(engine: Engine) -> EntryStore:
    s = EntryStore(engine)
    s.create_schema()
    return s


@pytest.fixture
def app(
    store: EntryStore, verifier: TokenVerifier, registry: TenantRegistry, events: MemorySink
) -> Any:
    return create_app(
        store=store, verifier=verifier, tenants=registry, region=REGION, events=events
    )


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def token_for(issuer: DevIssuer) -> TokenFactory:
    """``token_for(tenant, sub="alice", scopes=ALL_SCOPES, **mint_kwargs)``."""

    def _mint(tenant: Tenant, sub: str = "alice", **kwargs: Any) -> str:
        kwargs.setdefault("scopes", ALL_SCOPES)
        kwargs.setdefault("audience", AUDIENCE)
        return issuer.mint(tenant_id=tenant.id, subject=sub, **kwargs)

    return _mint


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
