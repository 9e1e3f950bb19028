"""Demonstrates wiring the FastAPI service from a deployment's settings, for ``uvicorn``.

``uvicorn --factory tenancy_examples.fastapi_worklogs.main:app_from_env`` serves it over
the demo's state (``TENANCY_DATA_DIR``: the dev issuer's keys, the tenants, their keys):
users' tokens from the dev issuer for ``TENANCY_AUDIENCE``, the tenant registry and keys
on ``TENANCY_DATABASE_URL`` (SQLite through aiosqlite, or PostgreSQL through psycopg's
async mode or asyncpg), the policy embedded (or at ``TENANCY_OPA_URL``).
"""

from __future__ import annotations

import functools

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from tenancy.deployment import (
    authorizer_for,
    open_audit,
    open_engine,
    open_keys,
    open_registry,
)
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.identity.dev import JWKS_FILE
from tenancy.keys.columns import SESSION_KEYS
from tenancy.scoping import AsyncTenantSession
from tenancy.scoping.audit import audit_engine
from tenancy.settings import Settings
from tenancy_examples import policy
from tenancy_examples.fastapi_worklogs.app import POLICY_DATA, SERVICE, create_app
from tenancy_examples.fastapi_worklogs.models import create_schema

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}


def async_engine(database_url: str) -> AsyncEngine:
    """The database at ``database_url`` through an async driver (``sqlite`` becomes
    ``sqlite+aiosqlite``, plain ``postgresql`` psycopg's async mode; an explicit async
    driver such as ``postgresql+asyncpg`` is kept)."""
    url = make_url(database_url)
    driver = ASYNC_DRIVERS.get(url.drivername, url.drivername)
    if driver == "sqlite+aiosqlite":
        engine = create_async_engine(url.set(drivername=driver), connect_args={"timeout": 10})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_async_engine(url.set(drivername=driver), pool_pre_ping=True)


def build(settings: Settings) -> FastAPI:
    """The service over the settings' database and data directory (the demo's state,
    ``tenancy_examples.demo_state.prepare``). On SQLite its table is created here; on
    PostgreSQL the owner creates it (``models.create_schema``) and this process, the
    application role, refuses to start if the isolation audit finds a gap."""
    engine = open_engine(settings)  # registry, keys and audit: sync, off the event loop
    if settings.uses_sqlite:
        with engine.begin() as connection:
            create_schema(connection)
    audit = open_audit(settings, engine=engine)
    keys = open_keys(settings, engine=engine, events=audit)
    dev_keys = JWKSKeySource.from_file(settings.data_dir / JWKS_FILE, algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [
            trusted_issuer(
                DEV_ISSUER, audience=settings.audience, keys=dev_keys, algorithms=["EdDSA"]
            )
        ]
    )
    sessions = async_sessionmaker(
        async_engine(settings.database_url),
        class_=AsyncTenantSession,
        expire_on_commit=False,
        info={SESSION_KEYS: keys},
    )
    return create_app(
        sessions=sessions,
        verifier=verifier,
        tenants=open_registry(settings, engine=engine, events=audit),
        region=settings.region,
        events=audit,
        startup_audit=None if settings.uses_sqlite else functools.partial(audit_engine, engine),
        authorizer=authorizer_for(settings, SERVICE, policy_data=[policy.DATA, POLICY_DATA]),
    )


def app_from_env() -> FastAPI:
    """``uvicorn --factory``'s entry: :func:`build` on ``Settings.from_env()``."""
    return build(Settings.from_env())
