"""The components of a deployment described by :class:`~tenancy.settings.Settings`.

What the ``tenancy`` command line works on, and what a service's ``main`` can build its
parts from: one database (``settings.database_url``; by default a SQLite file in the data
directory), the tenant registry, the tenants' keys, support access, the audit log, the
export links' signing key and the policy decisions. Everything else lives in the data
directory:

==========================  =============================================================
``keys/root.key``           root key sealing the local KEKs (unless ``TENANCY_ROOT_KEY``)
``keys/keks.json``          platform-managed KEKs (provider ``local``)
``keys/customer-keks.json`` a local stand-in for a customer's KMS (``customer-local``)
``keys/key-state``          key-state changes shared by every process on the host
``keys/audit.key``          the audit chain's HMAC key (unless ``TENANCY_AUDIT_KEY``)
``keys/export-signing.key`` export links' HMAC key (unless ``TENANCY_EXPORT_SIGNING_KEY``)
``outbox/``                 support-access notices, as JSON files
``decision-log/``           policy decisions, one JSON-lines file per service
==========================  =============================================================

Secrets are created 0600 on first use, and a group- or world-readable one is refused.
On SQLite each ``open_*`` creates its tables; on PostgreSQL the owner's migrations do
(the registry's table alone is created if missing).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event

from tenancy.errors import ConfigurationError
from tenancy.scoping.pooling import pooler_options
from tenancy.settings import Settings
from tenancy.tenants import TenantRegistry

if TYPE_CHECKING:
    from tenancy.audit import AuditLog
    from tenancy.authz import Authorizer, PolicyBundle, RoleBindings
    from tenancy.events import EventSink
    from tenancy.exports import ExportService, ExportSource
    from tenancy.keys import TenantKeys
    from tenancy.keys.state import KeyStateSignal
    from tenancy.propagation import ReplayGuard
    from tenancy.support import SupportAccess

# Support staff's tokens name the platform's own tenant, which holds no customer data:
# staff reach a customer's tenant only under a grant (tenancy.support).
STAFF_TENANT_ID = "00000000-0000-4000-8000-000000000001"
EXPORT_KEY_ENV = "TENANCY_EXPORT_SIGNING_KEY"  # base64url of >= 32 random bytes
AUDIT_KEY_ENV = "TENANCY_AUDIT_KEY"

__all__ = [
    "AUDIT_KEY_ENV",
    "EXPORT_KEY_ENV",
    "STAFF_TENANT_ID",
    "audit_key_file",
    "authorizer_for",
    "export_signing_key",
    "open_audit",
    "open_engine",
    "open_exports",
    "open_keys",
    "open_registry",
    "open_role_bindings",
    "open_support",
    "policy_bundle",
    "replay_guard_for",
    "state_signal",
    "tenant_state",
]


def open_engine(settings: Settings) -> Engine:
    """The settings' database; SQLite gets WAL and a busy timeout for concurrent access."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.uses_sqlite:
        # Pre-ping: a connection PostgreSQL dropped (restart, terminate) is replaced
        # before use; behind a transaction pooler, nothing is prepared server-side.
        return create_engine(
            settings.database_url,
            pool_pre_ping=True,
            **pooler_options(settings.database_url, settings.database_pooler),
        )
    engine = create_engine(settings.database_url, connect_args={"timeout": 10})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def state_signal(settings: Settings, kind: str) -> KeyStateSignal:
    """Where every process learns that a tenant's ``kind`` of state changed (``key``: its
    keys; ``tenant``: its registry entry; ``policy``: its role bindings): a generation
    file every process of this host maps (``keys/key-state``, ``tenant-state``,
    ``policy-state`` in the data directory), or Redis (``TENANCY_STATE_SIGNAL``) for
    replicas on several hosts. Every process, the CLI included, must use the same one:
    a change announced on one signal is not seen by processes watching the other."""
    from tenancy.keys.state import SharedKeyState

    if settings.state_signal is not None:
        from tenancy.keys.redis_state import RedisKeyState

        return RedisKeyState(settings.state_signal, prefix=f"tenancy:{kind}state")
    folder = settings.data_dir / "keys" if kind == "key" else settings.data_dir
    return SharedKeyState(folder / f"{kind}-state")


def tenant_state(settings: Settings) -> KeyStateSignal:
    """Where every process learns that a tenant changed (a suspension by the CLI): read on
    each cache hit of the registry (``state_signal(settings, "tenant")``)."""
    return state_signal(settings, "tenant")


def open_registry(
    settings: Settings, *, engine: Engine | None = None, events: EventSink | None = None
) -> TenantRegistry:
    """The tenant registry (its table created if missing), its cache invalidated in every
    process of the host by a change made in any (``tenant_state``)."""
    registry = TenantRegistry(
        engine or open_engine(settings), events=events, signal=tenant_state(settings)
    )
    registry.create_schema()
    return registry


def open_keys(
    settings: Settings, *, engine: Engine | None = None, events: EventSink | None = None
) -> TenantKeys:
    """The tenants' keys: platform-managed KEKs in ``keys/keks.json`` sealed by the root
    key (``TENANCY_ROOT_KEY``, else ``keys/root.key``, created 0600), data keys in the
    database. A second local provider, ``customer-local``, stands in for a customer's own
    KMS so ``tenancy keys use-cmk`` and ``revoke-test`` can be tried without one.
    ``TENANCY_PKCS11_LIBRARY``/``_TOKEN``/``_PIN`` add an HSM (provider ``pkcs11``) and
    ``TENANCY_AWS_KMS_REGION`` (optional ``_ENDPOINT``) AWS KMS (provider ``aws-kms``).

    Raises:
        ConfigurationError: the root key is malformed or readable by others.
    """
    from tenancy.keys import KeyProvider, LocalKeyProvider, RootKey, TenantKeys
    from tenancy.keys.local import ROOT_KEY_ENV

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
    # Every process on the host (services, replicas, the CLI) maps the same key-state
    # file, so a shred or rotation made by the CLI is seen by running services on their
    # next use; with TENANCY_STATE_SIGNAL, every process on every host, through Redis.
    keys = TenantKeys(
        engine or open_engine(settings),
        providers,
        default_provider="local",
        events=events,
        state=state_signal(settings, "key"),
    )
    if settings.uses_sqlite:
        keys.create_schema()
    return keys


def replay_guard_for(settings: Settings, *, engine: Engine | None = None) -> ReplayGuard:
    """Where context-token ids are remembered (``TENANCY_REPLAY_GUARD``): this process's
    memory, the service's database (``TableReplayGuard``; its table comes from the
    migrations, or is created on SQLite), or Redis (``RedisReplayGuard``). Replicas behind
    a load balancer need one of the shared two, or a token replayed to another replica
    is accepted there."""
    from tenancy.propagation import MemoryReplayGuard, RedisReplayGuard, TableReplayGuard

    if settings.replay_guard == "memory":
        return MemoryReplayGuard()
    if settings.replay_guard == "database":
        guard = TableReplayGuard(engine or open_engine(settings))
        if settings.uses_sqlite:
            guard.create_schema()
        return guard
    return RedisReplayGuard(settings.replay_guard)


def open_support(
    settings: Settings, *, engine: Engine | None = None, events: EventSink | None = None
) -> SupportAccess:
    """Support access over the settings' database; notices go to ``outbox/`` as JSON."""
    from tenancy.support import OutboxNotifier, SupportAccess

    support = SupportAccess(
        engine or open_engine(settings),
        events=events,
        notifier=OutboxNotifier(settings.data_dir / "outbox"),
    )
    if settings.uses_sqlite:
        support.create_schema()
    return support


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
    source: ExportSource,
    engine: Engine | None = None,
    keys: TenantKeys | None = None,
    events: EventSink | None = None,
) -> ExportService:
    """Exports of ``source``'s rows, their content sealed under each tenant's key and
    their links signed with :func:`export_signing_key`."""
    from tenancy.exports import ExportService, create_schema

    engine = engine or open_engine(settings)
    if settings.uses_sqlite:
        create_schema(engine)
    return ExportService(
        engine,
        source=source.rows,
        fields=source.fields,
        keys=keys or open_keys(settings, engine=engine),
        signing_key=export_signing_key(settings),
        events=events,
    )


def audit_key_file(settings: Settings) -> Path | None:
    """The audit chain's HMAC key: ``$TENANCY_AUDIT_KEY`` if set (then ``None`` here),
    else ``keys/audit.key`` (created 0600). It is never stored in the database."""
    from tenancy.audit import write_audit_key

    if os.environ.get(AUDIT_KEY_ENV):
        return None
    path = settings.data_dir / "keys" / "audit.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audit_key(path)
    return path


def open_audit(settings: Settings, *, engine: Engine | None = None) -> AuditLog:
    """The per-tenant, hash-chained audit log that components write their events to."""
    from tenancy.audit import AuditLog

    log = AuditLog(engine or open_engine(settings), audit_key_file(settings))
    if settings.uses_sqlite:
        log.create_schema()
    return log


def policy_bundle(settings: Settings, *, policy_data: Sequence[str | Path] = ()) -> PolicyBundle:
    """The policies and their data: the shipped policies, or the archive at
    ``TENANCY_POLICY_BUNDLE`` (its signature checked against ``TENANCY_POLICY_BUNDLE_KEY``
    when set), with the application's data laid over (``policy_data``, then
    ``TENANCY_POLICY_DATA``).

    Raises:
        ConfigurationError: a data file is missing or not a JSON object; the key is
            unreadable.
        PolicyBundleInvalid: the archive is malformed or fails its signature check.
    """
    from tenancy.authz import PolicyBundle

    layers = [*policy_data, *settings.policy_data]
    if settings.policy_bundle is None:
        return PolicyBundle.from_directory(data=layers)
    from tenancy.authz.archive import read_bundle

    key = None
    if settings.policy_bundle_key is not None:
        try:
            key = settings.policy_bundle_key.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"TENANCY_POLICY_BUNDLE_KEY cannot be read: {exc}") from exc
    return read_bundle(settings.policy_bundle, verification_key=key).overlaid(layers)


def open_role_bindings(
    settings: Settings, *, engine: Engine | None = None, events: EventSink | None = None
) -> RoleBindings:
    """The tenants' role bindings (``tenancy_role_bindings``; created here on SQLite, by
    the owner's migrations on PostgreSQL), every change announced to every process through
    ``state_signal(settings, "policy")``: the host's ``policy-state`` file, or Redis."""
    from tenancy.authz import RoleBindings

    store = RoleBindings(
        engine or open_engine(settings), signal=state_signal(settings, "policy"), events=events
    )
    if settings.uses_sqlite:
        store.create_schema()
    return store


def authorizer_for(
    settings: Settings, service: str, *, policy_data: Sequence[str | Path] = ()
) -> Authorizer:
    """The policy decisions of ``service``, logged as JSON lines per service: the policies
    of ``policy_bundle`` evaluated embedded, or pushed to the OPA server at
    ``TENANCY_OPA_URL``; or, with ``TENANCY_OPA_BUNDLE``, the bundle that OPA server loads
    itself (then ``policy_data`` is not read: build the bundle with it).

    Role bindings: in the first two cases from the database (``open_role_bindings``), so a
    binding changed by any process (``tenancy authz roles``) is reloaded before this
    service's next decision for that tenant, cached decisions included. With
    ``TENANCY_OPA_BUNDLE`` they are whatever the bundle OPA loaded holds (build and
    publish a new bundle to change them); the database's are not read.

    Raises:
        ConfigurationError: a policy data file is missing or not a JSON object.
        PolicyBundleInvalid: the policy bundle archive is malformed or fails its check.
    """
    from tenancy.authz import (
        Authorizer,
        EmbeddedRego,
        JsonLinesDecisionLog,
        OPAServer,
        PolicyDecisionPoint,
        RoleBindingsRefresher,
    )

    log = JsonLinesDecisionLog(settings.data_dir / "decision-log" / f"{service}.jsonl")
    if settings.opa_url is not None and settings.opa_bundle is not None:
        pdp = OPAServer(settings.opa_url, bundle_name=settings.opa_bundle)
        return Authorizer(pdp, service=service, log=log)
    bundle = policy_bundle(settings, policy_data=policy_data)
    engine: PolicyDecisionPoint = (
        EmbeddedRego(bundle)
        if settings.opa_url is None
        else OPAServer(settings.opa_url, bundle=bundle)
    )
    bindings = RoleBindingsRefresher(open_role_bindings(settings), bundle)
    return Authorizer(engine, service=service, bundle=bundle, log=log, role_bindings=bindings)
