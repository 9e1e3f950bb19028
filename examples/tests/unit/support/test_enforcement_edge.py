"""Support staff through the example edge to the worklogs backend: only under a grant."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tenancy.clock import FrozenClock
from tenancy.context import PrincipalKind
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.propagation import ContextTokenVerifier, ServiceKeyring, trusted_service
from tenancy.support import SupportAccess
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples.edge.app import create_app as create_edge
from tenancy_examples.worklogs.app import create_app as create_worklogs
from tenancy_examples.worklogs.store import WorklogStore
from tests.conftest import REGION
from tests.unit.propagation.conftest import keys_of
from tests.unit.support.conftest import STAFF, admin
from tests.unit.support.test_enforcement import KINDS, as_staff, grant

pytestmark = pytest.mark.anyio


async def test_support_reaches_the_backend_through_the_edge_under_its_grant(
    engine: Engine,
    keys: JWKSKeySource,
    registry: TenantRegistry,
    support: SupportAccess,
    issuer: DevIssuer,
    clock: FrozenClock,
    acme: Tenant,
) -> None:
    ring = ServiceKeyring.generate("edge")
    store = WorklogStore(engine)
    store.create_schema()
    backend = create_worklogs(
        store=store,
        tenants=registry,
        region=REGION,
        support=support,
        verifier=ContextTokenVerifier(
            audience="worklogs",
            services=[
                trusted_service(
                    "edge",
                    keys=keys_of(ring),
                    scopes=["worklogs:read", "worklogs:write"],
                    kinds=KINDS,
                )
            ],
        ),
    )
    edge = create_edge(
        verifier=TokenVerifier(
            [
                trusted_issuer(
                    DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"], kinds=KINDS
                )
            ]
        ),
        tenants=registry,
        region=REGION,
        keyring=ring,
        worklogs_url="http://worklogs",
        transport=httpx.ASGITransport(app=backend),
        support=support,
    )
    grant_id = grant(support, acme)
    token = issuer.mint(
        tenant_id=STAFF,
        subject="sam",
        audience="edge",
        mfa=True,
        scopes=("worklogs:read",),
        kind=PrincipalKind.SUPPORT,
        extra_claims={"trusted_device": True},
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge), base_url="http://edge"
    ) as c:
        me = await c.get("/whoami", headers=as_staff(token, "acme"))
        assert me.status_code == 200, me.text
        assert (me.json()["tenant"], me.json()["caller"]) == ("acme", "edge")
        support.revoke(acme.id, grant_id, admin(acme), reason="done")
        assert (await c.get("/whoami", headers=as_staff(token, "acme"))).status_code == 403
