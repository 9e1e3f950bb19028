"""Demonstrates wiring the worklogs backend: it accepts context tokens from the edge only.

A user's access token sent straight to this service is refused: the only credential it
trusts is a context token minted for the ``worklogs`` audience by the ``edge`` service,
whose public keys it reads from the edge's JWKS (a file in the demo; in production the
edge's ``/.well-known/jwks.json`` through ``JWKSKeySource.from_url``).
"""

from __future__ import annotations

import functools

from starlette.applications import Starlette

from tenancy.context import PrincipalKind
from tenancy.deployment import (
    authorizer_for,
    open_audit,
    open_engine,
    open_keys,
    open_registry,
    open_support,
    replay_guard_for,
)
from tenancy.identity import JWKSKeySource
from tenancy.propagation import ContextTokenVerifier, trusted_service
from tenancy.scoping.audit import audit_engine
from tenancy.settings import Settings
from tenancy_examples import policy
from tenancy_examples.demo_state import edge_jwks_path, open_worklog_exports
from tenancy_examples.worklogs.app import EXPORT, READ, WRITE, create_app
from tenancy_examples.worklogs.store import WorklogStore

SERVICE = "worklogs"
EDGE = "edge"


def build_worklogs(settings: Settings) -> Starlette:
    """The backend over the demo's state (prepared by ``tenancy_examples.demo_state.prepare``)."""
    engine = open_engine(settings)
    edge_keys = JWKSKeySource.from_file(edge_jwks_path(settings), algorithms=["EdDSA"])
    verifier = ContextTokenVerifier(
        audience=SERVICE,
        # Seen token ids: shared by every replica when TENANCY_REPLAY_GUARD says where.
        replay=replay_guard_for(settings, engine=engine),
        # The edge may delegate worklogs scopes and nothing else.
        services=[
            trusted_service(
                EDGE,
                keys=edge_keys,
                scopes={READ, WRITE, EXPORT},
                kinds=[PrincipalKind.USER, PrincipalKind.SUPPORT],
            )
        ],
    )
    # PostgreSQL: the schema comes from `tenancy db migrate` run as the owner; this process
    # is the application role, and refuses to start if the isolation audit finds a gap.
    startup_audit = None if settings.uses_sqlite else functools.partial(audit_engine, engine)
    audit = open_audit(settings, engine=engine)  # every component's events, hash-chained
    keys = open_keys(settings, engine=engine, events=audit)
    store = WorklogStore(engine, keys=keys)
    return create_app(
        store=store,
        verifier=verifier,
        events=audit,
        tenants=open_registry(settings, engine=engine, events=audit),
        region=settings.region,
        startup_audit=startup_audit,
        authorizer=authorizer_for(settings, SERVICE, policy_data=[policy.DATA]),
        support=open_support(settings, engine=engine, events=audit),
        exports=open_worklog_exports(settings, engine=engine, keys=keys, events=audit),
    )
