"""The example services wired in-process for the isolation kit, built from the plugin's
fixtures: edge in front (users' tokens, policy, support), worklogs behind it (context
tokens, policy, encrypted comments, exports), one SQLite database.

``deployment(...)`` takes the knobs the mutation tests turn: a broken store, a broken
middleware class.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine
from starlette.applications import Starlette

from tenancy.authz import Authorizer, EmbeddedRego
from tenancy.context import Assurance, Principal, PrincipalKind
from tenancy.exports import ExportService, create_schema
from tenancy.identity import DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys
from tenancy.propagation import ContextTokenVerifier, ServiceKeyring, trusted_service
from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant, TenantRegistry
from tenancy.testing.plugin import Role
from tenancy.testing.probe import GrantState, Identity, TokenSource
from tenancy_examples import policy
from tenancy_examples.edge.app import create_app as create_edge
from tenancy_examples.worklogs.app import create_app as create_worklogs
from tenancy_examples.worklogs.personal_data import WORKLOG_FIELDS
from tenancy_examples.worklogs.store import WorklogStore

STAFF_TENANT = "00000000-0000-4000-8000-000000000001"
EDGE_AUDIENCE = "edge"
READ, WRITE, EXPORT = "worklogs:read", "worklogs:write", "worklogs:export"
# The probe's requests for the example services: what seeds data and how bodies look.
ROUTES: Mapping[str, Mapping[str, Any]] = {
    "POST /worklogs": {
        "body": {
            "description": "probe {canary}",
            "minutes": 5,
            "day": "2026-11-21",
            "comment": "secret {canary}",
        },
        "seed": True,
        "capture": {"id": "id"},
    },
    "PATCH /worklogs/{id}": {"body": {"description": "overwritten {canary}"}},
    "POST /exports": {
        "body": {"format": "json"},
        "seed": True,
        "capture": {"token": {"from": "download", "pattern": "^/exports/(.+)$"}},
    },
}
PUBLIC = ("/healthz", "/.well-known/jwks.json", "/openapi.json")


@pytest.fixture
def tenancy_audience() -> str:
    return EDGE_AUDIENCE


@pytest.fixture
def tenancy_roles() -> Mapping[str, Role]:
    return {
        "admin": Role((READ, WRITE, EXPORT), mfa=True),
        "member": Role((READ, WRITE)),
        "viewer": Role((READ,)),
    }


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return create_engine(f"sqlite:///{tmp_path / 'services.db'}")


@pytest.fixture
def tenancy_registry(engine: Engine) -> TenantRegistry:
    registry = TenantRegistry(engine)
    registry.create_schema()
    return registry


@pytest.fixture
def support(engine: Engine) -> SupportAccess:
    access = SupportAccess(engine, notifier=MemoryNotifier())
    access.create_schema()
    return access


@dataclass(frozen=True)
class Deployment:
    edge: Starlette
    store: WorklogStore
    staff: tuple[Identity, ...]


def staff_principal(subject: str) -> Principal:
    return Principal(
        issuer="https://dev-issuer.tenancy.invalid",
        tenant_id=STAFF_TENANT,
        subject=subject,
        kind=PrincipalKind.SUPPORT,
        scopes=frozenset({READ}),
        assurance=Assurance.MULTI_FACTOR,
        device_trusted=True,
    )


def tenant_admin(tenant: Tenant) -> Principal:
    return Principal(
        issuer="https://dev-issuer.tenancy.invalid",
        tenant_id=tenant.id,
        subject=f"{tenant.slug}-boss",
        roles=frozenset({"admin"}),
        assurance=Assurance.MULTI_FACTOR,
    )


def grant(support: SupportAccess, tenant: Tenant, subject: str, *, expired: bool) -> str:
    """Request and approve a read grant; ``expired``: its ticket closed 25 h ago."""
    ticket = f"T-{subject}"
    requested = support.request(
        tenant.id,
        staff_principal(subject),
        ticket_id=ticket,
        justification="probe",
        scopes=[READ],
        duration=timedelta(hours=1),
    )
    support.approve(tenant.id, requested.id, tenant_admin(tenant))
    if expired:
        support.close_ticket(ticket, tenant_id=tenant.id, at=support.now() - timedelta(hours=25))
        assert support.get(tenant.id, requested.id).ticket_closed_at is not None
    return requested.id


@pytest.fixture
def deployment(
    tmp_path: Path,
    engine: Engine,
    tenancy_registry: TenantRegistry,
    tenancy_tenants: Mapping[str, Tenant],
    tenancy_issuer: DevIssuer,
    support: SupportAccess,
) -> Callable[..., Deployment]:
    """``deployment(store_class=..., edge_middleware=...)`` builds the services."""

    def build(
        *, store_class: type[WorklogStore] = WorklogStore, edge_middleware: type | None = None
    ) -> Deployment:
        keys = TenantKeys(
            engine,
            [
                LocalKeyProvider(
                    tmp_path / "keks.json", root=RootKey.load_or_create(tmp_path / "root.key")
                )
            ],
            default_provider="local",
        )
        keys.create_schema()
        for tenant in tenancy_tenants.values():
            if not keys.status(tenant.id).kek:
                keys.provision(tenant.id)
        store = store_class(engine, keys=keys)
        store.create_schema()
        create_schema(engine)
        exports = ExportService(
            engine,
            source=functools.partial(store.list, limit=10_000),
            fields=WORKLOG_FIELDS,
            keys=keys,
            signing_key=os.urandom(32),
        )
        bundle = policy.bundle()
        kinds = (PrincipalKind.USER, PrincipalKind.SUPPORT)
        ring = ServiceKeyring.generate("edge")
        backend = create_worklogs(
            store=store,
            tenants=tenancy_registry,
            region="eu-central-1",
            support=support,
            exports=exports,
            verifier=ContextTokenVerifier(
                audience="worklogs",
                services=[
                    trusted_service(
                        "edge",
                        keys=JWKSKeySource(
                            ring.jwks, algorithms=("EdDSA",), min_refresh_interval=0
                        ),
                        scopes=frozenset({READ, WRITE, EXPORT}),
                        kinds=kinds,
                    )
                ],
            ),
            authorizer=Authorizer(EmbeddedRego(bundle), service="worklogs", bundle=bundle),
        )
        users = TokenVerifier(
            [
                trusted_issuer(
                    tenancy_issuer.issuer,
                    audience=EDGE_AUDIENCE,
                    keys=JWKSKeySource(tenancy_issuer.jwks, algorithms=["EdDSA"]),
                    algorithms=["EdDSA"],
                    kinds=kinds,
                )
            ]
        )
        edge = create_edge(
            verifier=users,
            tenants=tenancy_registry,
            region="eu-central-1",
            keyring=ring,
            worklogs_url="http://worklogs",
            transport=httpx.ASGITransport(app=backend),
            support=support,
            authorizer=Authorizer(EmbeddedRego(bundle), service="edge", bundle=bundle),
        )
        if edge_middleware is not None:
            edge.user_middleware[0].cls = edge_middleware
        acme, globex = tenancy_tenants["acme"], tenancy_tenants["globex"]
        grant(support, acme, "staff-expired", expired=True)
        grant(support, globex, "staff-globex", expired=False)

        def staff(name: str, state: GrantState, tenant: str | None) -> Identity:
            token = tenancy_issuer.mint(
                tenant_id=STAFF_TENANT,
                subject=name,
                audience=EDGE_AUDIENCE,
                scopes=[READ],
                roles=["support"],
                mfa=True,
                kind=PrincipalKind.SUPPORT,
                extra_claims={"trusted_device": True},
            )
            return Identity(name, tenant, TokenSource(value=token), support=True, grant=state)

        return Deployment(
            edge,
            store,
            (
                staff("staff-no-grant", GrantState.NONE, None),
                staff("staff-expired", GrantState.EXPIRED, "acme"),
                staff("staff-globex", GrantState.ACTIVE, "globex"),
            ),
        )

    return build
