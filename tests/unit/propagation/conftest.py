"""Context-token fixtures: an edge keyring, a worklogs verifier trusting it, a bound context."""

from __future__ import annotations

import pytest

from tenancy.clock import FrozenClock
from tenancy.context import Assurance, Principal, TenantContext
from tenancy.identity import DEV_ISSUER, JWKSKeySource
from tenancy.propagation import (
    ContextTokenMinter,
    ContextTokenVerifier,
    MemoryReplayGuard,
    ServiceKeyring,
    trusted_service,
)
from tenancy.tenants import Tenant
from tests.conftest import REGION

EDGE = "edge"
WORKLOGS = "worklogs"
DELEGABLE = frozenset({"worklogs:read", "worklogs:write"})


def keys_of(ring: ServiceKeyring, algorithms: tuple[str, ...] = ("EdDSA",)) -> JWKSKeySource:
    """A JWKS source that reads the keyring's current JWKS on every refresh."""
    return JWKSKeySource(lambda: ring.jwks(), algorithms=algorithms, min_refresh_interval=0)


@pytest.fixture
def edge_ring(clock: FrozenClock) -> ServiceKeyring:
    return ServiceKeyring.generate(EDGE, clock=clock)


@pytest.fixture
def minter(edge_ring: ServiceKeyring, clock: FrozenClock) -> ContextTokenMinter:
    return ContextTokenMinter(edge_ring, clock=clock)


@pytest.fixture
def replay_guard() -> MemoryReplayGuard:
    return MemoryReplayGuard()


@pytest.fixture
def ctx_verifier(
    edge_ring: ServiceKeyring, clock: FrozenClock, replay_guard: MemoryReplayGuard
) -> ContextTokenVerifier:
    return ContextTokenVerifier(
        audience=WORKLOGS,
        services=[trusted_service(EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE)],
        clock=clock,
        replay=replay_guard,
    )


def context_of(
    tenant: Tenant, *, sub: str = "alice", scopes: frozenset[str] = DELEGABLE, **fields: object
) -> TenantContext:
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=tenant.id,
        subject=sub,
        roles=frozenset({"member"}),
        scopes=scopes,
        assurance=Assurance.MULTI_FACTOR,
    )
    return TenantContext(tenant.id, tenant.slug, REGION, principal, "rid-1", **fields)  # type: ignore[arg-type]


@pytest.fixture
def acme_ctx(acme: Tenant) -> TenantContext:
    return context_of(acme)
