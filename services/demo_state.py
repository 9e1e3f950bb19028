"""Demonstrates the state both demo services share: database, tenants, and keys.

The demo keeps everything in one data directory: a SQLite database (or the PostgreSQL
of ``TENANCY_DATABASE_URL``), the dev issuer's key and JWKS, and the edge's context-token
keyring with its public JWKS, which the worklogs backend trusts.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event

from tenancy.settings import Settings
from tenancy.tenants import TenantRegistry

if TYPE_CHECKING:
    from tenancy.audit import AuditLog
    from tenancy.authz import Authorizer
    from tenancy.events import EventSink
    from tenancy.exports import ExportService
    from tenancy.keys import TenantKeys
    from tenancy.support import SupportAccess

logger = logging.getLogger("tenancy.demo")

DEMO_TENANTS = (("acme", "Acme Corporation"), ("globex", "Globex Inc."))
# Support staff's tokens name the platform's own tenant, which serves no customer data.
STAFF_TENANT_ID = "00000000-0000-4000-8000-000000000001"
EDGE = "edge"


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


def edge_keyring_dir(settings: Settings) -> Path:
    return settings.data_dir / "service-keys" / EDGE


def edge_jwks_path(settings: Settings) -> Path:
    return edge_keyring_dir(settings) / "jwks.json"


def open_keys(
    settings: Settings, *, engine: Engine | None = None, events: EventSink | None = None
) -> TenantKeys:
    """The tenants' keys: platform-managed KEKs in ``keys/keks.json`` sealed by the root
    key (``TENANCY_ROOT_KEY``, else ``keys/root.key``, created 0600), data keys in the
    database. The demo's second local provider, ``customer-local``, stands in for a
    customer's own KMS so ``tenancy keys use-cmk`` and ``revoke-test`` can be tried.
    ``TENANCY_PKCS11_LIBRARY``/``_TOKEN``/``_PIN`` add an HSM (provider ``pkcs11``) and
    ``TENANCY_AWS_KMS_REGION`` (optional ``_ENDPOINT``) AWS KMS (provider ``aws-kms``)."""
    from tenancy.keys import KeyProvider, LocalKeyProvider, RootKey, TenantKeys
    from tenancy.keys.local import ROOT_KEY_ENV
    from tenancy.keys.state import SharedKeyState

    folder = settings.data_dir / "keys"
    root = (
        RootKey.from_env()
        if os.environ.get(ROOT_KEY_ENV)
        else RootKey.load_or_create(folder / "root.key")
    )
    providers: list[KeyProvider] = [
        LocalKeyProvider(folder / "keks.json", root=root),
        LocalKeyProvider(folder / "customer-keks.json", root=root, name="customer-local"),
    ]
    env = os.environ
    if env.get("TENANCY_PKCS11_LIBRARY"):  # an HSM, e.g. /usr/lib/softhsm/libsofthsm2.so
        from tenancy.keys.pkcs11 import Pkcs11KeyProvider

        providers.append(
            Pkcs11KeyProvider(
                env["TENANCY_PKCS11_LIBRARY"],
                token_label=env.get("TENANCY_PKCS11_TOKEN", ""),
                user_pin=env.get("TENANCY_PKCS11_PIN", ""),
            )
        )
    if env.get("TENANCY_AWS_KMS_REGION"):  # customer keys in AWS KMS (boto3 credentials)
        from tenancy.keys.aws import AwsKmsKeyProvider

        endpoint = env.get("TENANCY_AWS_KMS_ENDPOINT")
        providers.append(
            AwsKmsKeyProvider.from_region(
                env["TENANCY_AWS_KMS_REGION"], **({"endpoint_url": endpoint} if endpoint else {})
            )
        )
    # Every demo process (both services, the CLI) maps the same key-state file, so a
    # shred or rotation made by the CLI is seen by the running services on their next use.
    keys = TenantKeys(
        engine or open_engine(settings),
        providers,
        default_provider="local",
        events=events,
        state=SharedKeyState(folder / "key-state"),
    )
    if settings.uses_sqlite:
        keys.create_schema()  # on PostgreSQL the migrations create it, as the owner
    return keys


def open_support(
    settings: Settings, *, engine: Engine | None = None, events: EventSink | None = None
) -> SupportAccess:
    """Support access over the demo's database; notices go to ``outbox/`` as JSON."""
    from tenancy.support import OutboxNotifier, SupportAccess

    support = SupportAccess(
        engine or open_engine(settings),
        events=events,
        notifier=OutboxNotifier(settings.data_dir / "outbox"),
    )
    if settings.uses_sqlite:
        support.create_schema()
    return support


EXPORT_KEY_ENV = "TENANCY_EXPORT_SIGNING_KEY"  # base64url of >= 32 random bytes


def export_signing_key(settings: Settings) -> bytes:
    """The export links' HMAC key: ``TENANCY_EXPORT_SIGNING_KEY``, else
    ``keys/export-signing.key`` (created 0600). Dedicated: never the root key."""
    encoded = os.environ.get(EXPORT_KEY_ENV)
    if encoded:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    from tenancy.secretfile import load_or_create_secret

    return load_or_create_secret(settings.data_dir / "keys" / "export-signing.key")


def open_exports(
    settings: Settings,
    *,
    engine: Engine | None = None,
    keys: TenantKeys | None = None,
    events: EventSink | None = None,
) -> ExportService:
    """Exports of the worklogs, their content sealed under each tenant's key."""
    from services.worklogs.store import WorklogStore
    from tenancy.exports import ExportService, create_schema

    engine = engine or open_engine(settings)
    keys = keys or open_keys(settings, engine=engine)
    store = WorklogStore(engine, keys=keys)
    if settings.uses_sqlite:
        store.create_schema()
        create_schema(engine)  # on PostgreSQL the migrations create it, as the owner
    return ExportService(
        engine,
        source=functools.partial(store.list, limit=100_000),
        keys=keys,
        signing_key=export_signing_key(settings),
        events=events,
    )


def audit_key_file(settings: Settings) -> Path | None:
    """The audit chain's HMAC key: ``$TENANCY_AUDIT_KEY`` if set (then ``None`` here),
    else ``keys/audit.key`` (created 0600). It is never stored in the database."""
    from tenancy.audit import write_audit_key

    if os.environ.get("TENANCY_AUDIT_KEY"):
        return None
    path = settings.data_dir / "keys" / "audit.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audit_key(path)
    return path


def open_audit(settings: Settings, *, engine: Engine | None = None) -> AuditLog:
    """The per-tenant, hash-chained audit log every demo component writes its events to."""
    from tenancy.audit import AuditLog

    log = AuditLog(engine or open_engine(settings), audit_key_file(settings))
    if settings.uses_sqlite:
        log.create_schema()
    return log


def authorizer_for(settings: Settings, service: str) -> Authorizer:
    """The policy decisions of ``service``: the shipped Rego policies, evaluated embedded
    (or by the OPA server at ``TENANCY_OPA_URL``), logged as JSON lines per service."""
    from tenancy.authz import (
        Authorizer,
        EmbeddedRego,
        JsonLinesDecisionLog,
        OPAServer,
        PolicyBundle,
        PolicyDecisionPoint,
    )

    bundle = PolicyBundle.from_directory()
    pdp: PolicyDecisionPoint = (
        EmbeddedRego(bundle)
        if settings.opa_url is None
        else OPAServer(settings.opa_url, bundle=bundle)
    )
    log = JsonLinesDecisionLog(settings.data_dir / "decision-log" / f"{service}.jsonl")
    return Authorizer(pdp, service=service, bundle=bundle, log=log)


def prepare(settings: Settings) -> TenantRegistry:
    """Create (or reopen) the schema, the demo tenants and every key, once, before any
    service process starts."""
    from services.worklogs.store import WorklogStore
    from tenancy.identity import DevIssuer
    from tenancy.propagation import ServiceKeyring

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
