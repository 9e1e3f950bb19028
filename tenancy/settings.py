"""Process settings, read once from the environment into a frozen, validated value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tenancy.errors import ConfigurationError
from tenancy.tenants.model import validate_region

DEFAULT_DATA_DIR = ".tenancy"
DEFAULT_REGION = "eu-central-1"
DEFAULT_AUDIENCE = "edge"
CONSISTENCY_CHECKS_ENV = "TENANCY_CONSISTENCY_CHECKS"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def consistency_checks_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``TENANCY_CONSISTENCY_CHECKS`` turns the cross-layer tenant check on
    (``tenancy.consistency``; meant for tests and staging). Unset means off.

    Raises:
        ConfigurationError: the value is not a recognisable boolean (never guess).
    """
    value = (os.environ if env is None else env).get(CONSISTENCY_CHECKS_ENV, "")
    flag = value.strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    raise ConfigurationError(f"{CONSISTENCY_CHECKS_ENV} must be 1/0, true/false, yes/no or on/off")


def _pooler(value: str) -> str | None:
    mode = value.strip().lower()
    if not mode:
        return None
    if mode not in ("transaction", "session"):
        raise ConfigurationError("TENANCY_DATABASE_POOLER must be transaction or session")
    return mode


def _state_signal(value: str) -> str | None:
    where = value.strip()
    if not where:
        return None
    if where.startswith(("redis://", "rediss://", "unix://")):
        return where
    raise ConfigurationError("TENANCY_STATE_SIGNAL must be a redis:// URL (or unset)")


def _path(value: str) -> Path | None:
    return Path(value.strip()).resolve() if value.strip() else None


def _replay_guard(value: str) -> str:
    where = value.strip() or "memory"
    if where in ("memory", "database") or where.startswith(("redis://", "rediss://")):
        return where
    raise ConfigurationError("TENANCY_REPLAY_GUARD must be memory, database or a redis:// URL")


@dataclass(frozen=True, slots=True)
class Settings:
    """Where state lives and which region this process serves.

    Environment: ``TENANCY_DATA_DIR``, ``TENANCY_REGION``, ``TENANCY_DATABASE_URL`` or
    ``DATABASE_URL`` (default: a SQLite file in the data directory), ``TENANCY_AUDIENCE``
    (the audience of users' access tokens at the edge), ``TENANCY_OPA_URL`` (an OPA server
    to decide with; default: the embedded Rego engine), ``TENANCY_CONSISTENCY_CHECKS``
    (cross-layer tenant checks, for tests and staging; default off),
    ``TENANCY_STATE_SIGNAL`` (how processes learn of a key or tenant change: unset, a
    file every process of this host maps; a ``redis://`` URL, replicas on several hosts),
    ``TENANCY_REPLAY_GUARD`` (where context-token ids are remembered: ``memory``, one
    process, the default; ``database``, the service's database; or a ``redis://`` URL:
    what replicas behind a load balancer need), ``TENANCY_DATABASE_POOLER``
    (``transaction`` when a transaction-pooling PgBouncer
    stands in front of PostgreSQL: drivers then never prepare statements; see
    ``tenancy.scoping.pooling``), ``TENANCY_POLICY_DATA`` (the application's policy data
    files, ``os.pathsep``-separated, laid over the shipped policy data in order; relative
    paths resolve against the working directory), ``TENANCY_POLICY_BUNDLE`` (an OPA bundle
    archive, as ``tenancy authz bundle build`` writes, for the embedded engine instead of
    the shipped policies; its data is still overlaid by ``TENANCY_POLICY_DATA``),
    ``TENANCY_POLICY_BUNDLE_KEY`` (a PEM public key: the archive must then carry a valid
    signature by it), ``TENANCY_OPA_BUNDLE`` (with ``TENANCY_OPA_URL``: the name of the
    bundle OPA loads itself; nothing is pushed to OPA and each decision records that
    bundle's revision).
    """

    data_dir: Path
    region: str
    database_url: str
    audience: str
    opa_url: str | None = None
    consistency_checks: bool = False
    policy_data: tuple[Path, ...] = ()
    database_pooler: str | None = None
    replay_guard: str = "memory"
    state_signal: str | None = None
    policy_bundle: Path | None = None
    policy_bundle_key: Path | None = None
    opa_bundle: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``env`` (default: ``os.environ``), then ``overrides`` (keyword per
        field; None values are ignored). The region and the consistency flag are validated
        here, so a bad value stops the process at start-up; the database URL is not checked
        until it is used.

        Raises:
            InvalidTenantField: the region is not shaped like one (``eu-central-1``).
            ConfigurationError: ``TENANCY_CONSISTENCY_CHECKS`` is not a recognisable
                boolean, ``TENANCY_DATABASE_POOLER`` names no pooler mode, or
                ``TENANCY_REPLAY_GUARD`` no guard, or ``TENANCY_STATE_SIGNAL`` no Redis URL.
        """
        source = os.environ if env is None else env
        data_dir = Path(
            overrides.pop("data_dir", None) or source.get("TENANCY_DATA_DIR") or DEFAULT_DATA_DIR
        ).resolve()
        settings = cls(
            data_dir=data_dir,
            region=validate_region(source.get("TENANCY_REGION", DEFAULT_REGION)),
            database_url=source.get("TENANCY_DATABASE_URL")
            or source.get("DATABASE_URL")
            or f"sqlite:///{data_dir / 'tenancy.db'}",
            audience=source.get("TENANCY_AUDIENCE", DEFAULT_AUDIENCE),
            opa_url=source.get("TENANCY_OPA_URL") or None,
            consistency_checks=consistency_checks_from_env(source),
            database_pooler=_pooler(source.get("TENANCY_DATABASE_POOLER", "")),
            replay_guard=_replay_guard(source.get("TENANCY_REPLAY_GUARD", "")),
            state_signal=_state_signal(source.get("TENANCY_STATE_SIGNAL", "")),
            policy_bundle=_path(source.get("TENANCY_POLICY_BUNDLE", "")),
            policy_bundle_key=_path(source.get("TENANCY_POLICY_BUNDLE_KEY", "")),
            opa_bundle=source.get("TENANCY_OPA_BUNDLE", "").strip() or None,
            policy_data=tuple(
                Path(part).resolve()
                for part in source.get("TENANCY_POLICY_DATA", "").split(os.pathsep)
                if part.strip()
            ),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        validate_region(settings.region)
        if settings.opa_bundle is not None and settings.opa_url is None:
            raise ConfigurationError(
                "TENANCY_OPA_BUNDLE names a bundle OPA loads: set TENANCY_OPA_URL"
            )
        if settings.opa_bundle is not None and settings.policy_bundle is not None:
            raise ConfigurationError(
                "TENANCY_OPA_BUNDLE and TENANCY_POLICY_BUNDLE both name the policies: keep one"
            )
        if settings.policy_bundle_key is not None and settings.policy_bundle is None:
            raise ConfigurationError(
                "TENANCY_POLICY_BUNDLE_KEY verifies TENANCY_POLICY_BUNDLE: set it"
            )
        return settings

    @property
    def uses_sqlite(self) -> bool:
        """Whether the database URL names SQLite, which has no row-level security: isolation
        there rests on query scoping alone."""
        return self.database_url.startswith("sqlite")
