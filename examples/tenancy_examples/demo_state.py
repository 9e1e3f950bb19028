"""Demonstrates the state the demo services share: database, tenants, and keys.

The demo keeps everything in one data directory: a SQLite database (or the PostgreSQL
of ``TENANCY_DATABASE_URL``), the dev issuer's key and JWKS, and the edge's context-token
keyring with its public JWKS, which the worklogs backend trusts. The generic parts (the
database, registry, keys, support access, audit log, policy decisions) come from
:mod:`tenancy.deployment`, exactly as the ``tenancy`` command line opens them; what is the
demo's own is here: its tenants, the edge's keyring and the worklogs' exports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tenancy.deployment import open_audit, open_engine, open_exports, open_keys, open_support
from tenancy.settings import Settings
from tenancy.tenants import TenantRegistry

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tenancy.events import EventSink
    from tenancy.exports import ExportService
    from tenancy.keys import TenantKeys

logger = logging.getLogger("tenancy.demo")

DEMO_TENANTS = (("acme", "Acme Corporation"), ("globex", "Globex Inc."))
EDGE = "edge"


def edge_keyring_dir(settings: Settings) -> Path:
    return settings.data_dir / "service-keys" / EDGE


def edge_jwks_path(settings: Settings) -> Path:
    return edge_keyring_dir(settings) / "jwks.json"


def open_worklog_exports(
    settings: Settings,
    *,
    engine: Engine | None = None,
    keys: TenantKeys | None = None,
    events: EventSink | None = None,
) -> ExportService:
    """Exports of the worklogs, their content sealed under each tenant's key."""
    from tenancy_examples.worklogs.personal_data import export_source

    engine = engine or open_engine(settings)
    keys = keys or open_keys(settings, engine=engine)
    return open_exports(
        settings,
        source=export_source(settings, engine=engine, keys=keys),
        engine=engine,
        keys=keys,
        events=events,
    )


def prepare(settings: Settings) -> TenantRegistry:
    """Create (or reopen) the schema, the demo tenants and every key, once, before any
    service process starts."""
    from tenancy.identity import DevIssuer
    from tenancy.propagation import ServiceKeyring
    from tenancy_examples.worklogs.store import WorklogStore

    if settings.uses_sqlite:
        logger.warning(
            "database is SQLite: tenant isolation is enforced by the ORM scoping layer "
            "only; PostgreSQL Row-Level Security is not in play"
        )
    engine = open_engine(settings)
    registry = TenantRegistry(engine)
    if settings.uses_sqlite:
        registry.create_schema()
        WorklogStore(engine).create_schema()
    open_audit(settings, engine=engine)
    keys = open_keys(settings, engine=engine)
    open_support(settings, engine=engine)
    for slug, name in DEMO_TENANTS:
        tenant = registry.ensure(slug, region=settings.region, display_name=name)
        keys.provision(tenant.id)
    DevIssuer.load_or_create(settings.data_dir)
    ServiceKeyring.load_or_create(edge_keyring_dir(settings), EDGE)
    return registry
