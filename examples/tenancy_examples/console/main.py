"""Demonstrates wiring the admin console over the demo's state.

The console verifies the same users' access tokens as the edge (the dev issuer's JWKS,
audience ``settings.audience``), but accepts users only: support staff never sign in
here. Grants live in the demo's database, so what the admin decides here is what the
edge and the worklogs backend enforce on the very next request.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tenancy.clock import SYSTEM_CLOCK
from tenancy.context import PrincipalKind
from tenancy.deployment import open_engine, open_support
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.identity.dev import JWKS_FILE
from tenancy.secretfile import load_or_create_secret
from tenancy.settings import Settings
from tenancy.support import webhook_app
from tenancy.tenants import TenantRegistry
from tenancy_examples.console.app import create_app


def build_console(settings: Settings, *, cookie_secure: bool = False) -> Starlette:
    """The console over the demo's state (prepared by ``tenancy_examples.demo_state.prepare``).

    ``cookie_secure=True`` behind HTTPS (the session cookie becomes ``__Host-``, Secure).
    """
    keys = JWKSKeySource.from_file(settings.data_dir / JWKS_FILE, algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER,
                audience=settings.audience,
                keys=keys,
                algorithms=["EdDSA"],
                kinds=(PrincipalKind.USER,),
            )
        ]
    )
    engine = open_engine(settings)
    support = open_support(settings, engine=engine)
    tenants = TenantRegistry(engine)
    console = create_app(
        verifier=verifier,
        support=support,
        tenants=tenants,
        region=settings.region,
        cookie_secure=cookie_secure,
    )
    # The ticketing system's webhook (HMAC-signed), beside the console: POST
    # /hooks/tickets/events closes tickets, and with them the grants they justified.
    hooks = webhook_app(
        support, secret=tickets_secret(settings), tenants=tenants, clock=SYSTEM_CLOCK
    )
    return Starlette(
        routes=[Route("/healthz", _healthz), Mount("/hooks", app=hooks), Mount("/", app=console)]
    )


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def tickets_secret(settings: Settings) -> bytes:
    """``TENANCY_TICKETS_SECRET`` (hex), else a random secret kept 0600 in the data dir."""
    value = os.environ.get("TENANCY_TICKETS_SECRET")
    if value:
        return bytes.fromhex(value)
    return load_or_create_secret(settings.data_dir / "tickets.secret")
