"""Demonstrates wiring the edge on embedded defaults: dev issuer users, worklogs backend."""

from __future__ import annotations

from starlette.applications import Starlette

from tenancy.context import PrincipalKind
from tenancy.deployment import (
    authorizer_for,
    open_audit,
    open_engine,
    open_registry,
    open_support,
)
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.identity.dev import JWKS_FILE
from tenancy.propagation import ServiceKeyring
from tenancy.settings import Settings
from tenancy_examples import policy
from tenancy_examples.demo_state import EDGE, edge_keyring_dir
from tenancy_examples.edge.app import create_app


def build_edge(settings: Settings, *, worklogs_url: str) -> Starlette:
    """The edge over the demo's state; users' tokens must be minted for ``settings.audience``."""
    keys = JWKSKeySource.from_file(settings.data_dir / JWKS_FILE, algorithms=["EdDSA"])
    # The dev issuer also stands in for the staff IdP: it may assert support principals.
    verifier = TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER,
                audience=settings.audience,
                keys=keys,
                algorithms=["EdDSA"],
                kinds=(PrincipalKind.USER, PrincipalKind.SUPPORT),
            )
        ]
    )
    engine = open_engine(settings)
    audit = open_audit(settings, engine=engine)
    return create_app(
        verifier=verifier,
        events=audit,
        tenants=open_registry(settings, engine=engine, events=audit),
        region=settings.region,
        keyring=ServiceKeyring.load_or_create(edge_keyring_dir(settings), EDGE),
        worklogs_url=worklogs_url,
        authorizer=authorizer_for(settings, EDGE, policy_data=[policy.DATA]),
        support=open_support(settings, engine=engine, events=audit),
    )
