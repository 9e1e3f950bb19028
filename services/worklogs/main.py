"""Demonstrates wiring the worklogs service on embedded defaults (SQLite + dev issuer).

``tenancy demo`` calls :func:`build_demo`; a production deployment would build the same
app with a PostgreSQL engine and its OIDC issuer's JWKS URL instead.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event
from starlette.applications import Starlette

from services.worklogs.app import create_app
from services.worklogs.store import WorklogStore
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.identity.dev import JWKS_FILE
from tenancy.scoping.audit import audit_engine
from tenancy.settings import Settings
from tenancy.tenants import TenantRegistry

logger = logging.getLogger("tenancy.demo")

DEMO_TENANTS = (("acme", "Acme Corporation"), ("globex", "Globex Inc."))


@dataclass(frozen=True, slots=True)
class Demo:
    app: Starlette
    issuer: DevIssuer
    tenants: TenantRegistry
    settings: Settings


def open_engine(settings: Settings) -> Engine:
    """The settings' database; SQLite gets WAL and a busy timeout for concurrent access."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.uses_sqlite:
        return create_engine(settings.database_url, pool_pre_ping=True)
    engine = create_engine(settings.database_url, connect_args={"timeout": 10})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def open_registry(settings: Settings) -> TenantRegistry:
    registry = TenantRegistry(open_engine(settings))
    registry.create_schema()
    return registry


def build_demo(settings: Settings) -> Demo:
    """Create (or reopen) the demo's state in ``settings.data_dir`` and build the app."""
    if settings.uses_sqlite:
        logger.warning(
            "database is SQLite: tenant isolation is enforced by the ORM scoping layer "
            "only; PostgreSQL Row-Level Security is not in play"
        )
    engine = open_engine(settings)
    registry = TenantRegistry(engine)
    store = WorklogStore(engine)
    startup_audit = None
    if settings.uses_sqlite:
        registry.create_schema()
        store.create_schema()
    else:
        # PostgreSQL: the schema comes from `tenancy db migrate` run as the owner; this
        # process is the application role, and refuses to start if the audit finds a gap.
        startup_audit = functools.partial(audit_engine, engine)
    for slug, name in DEMO_TENANTS:
        registry.ensure(slug, region=settings.region, display_name=name)

    issuer = DevIssuer.load_or_create(settings.data_dir)
    keys = JWKSKeySource.from_file(settings.data_dir / JWKS_FILE, algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=settings.audience, keys=keys,
                        algorithms=["EdDSA"])]
    )
    app = create_app(store=store, verifier=verifier, tenants=registry, region=settings.region,
                     startup_audit=startup_audit)
    return Demo(app=app, issuer=issuer, tenants=registry, settings=settings)
