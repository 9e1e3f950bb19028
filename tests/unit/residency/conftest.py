"""Two regional databases (two SQLite files) and tenants homed in each region."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from tenancy.context import Principal, PrincipalKind, TenantContext
from tenancy.tenants import Tenant
from tenancy.tenants.model import TenantStatus
from tests.support.scoping_models import Base

EU = "eu-central-1"
US = "us-east-1"
EU_TENANT = "00000000-0000-4000-8000-0000000000e0"
US_TENANT = "00000000-0000-4000-8000-0000000000a0"


def tenant(tenant_id: str, region: str) -> Tenant:
    now = datetime.now(UTC)
    return Tenant(
        id=tenant_id,
        slug=f"t{tenant_id[-2:]}",
        display_name="T",
        region=region,
        status=TenantStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )


def context_of(t: Tenant, *, kind: PrincipalKind = PrincipalKind.USER) -> TenantContext:
    """The context the middleware (or a message consumer) would bind for ``t``."""
    return TenantContext(
        tenant_id=t.id,
        tenant_slug=t.slug,
        region=t.region,
        principal=Principal(issuer="i", tenant_id=t.id, subject="alice", kind=kind),
        request_id="req-1",
    )


@pytest.fixture
def eu_tenant() -> Tenant:
    return tenant(EU_TENANT, EU)


@pytest.fixture
def us_tenant() -> Tenant:
    return tenant(US_TENANT, US)


@pytest.fixture
def db_files(tmp_path: Path) -> dict[str, Path]:
    return {EU: tmp_path / "eu.db", US: tmp_path / "us.db"}


@pytest.fixture
def regional_engines(db_files: dict[str, Path]) -> Iterator[dict[str, Engine]]:
    engines = {region: create_engine(f"sqlite:///{path}") for region, path in db_files.items()}
    for engine in engines.values():
        Base.metadata.create_all(engine)
    yield engines
    for engine in engines.values():
        engine.dispose()


def file_contains(path: Path, marker: str) -> bool:
    """Scan the database file itself (and any journal left beside it) for ``marker``."""
    needle = marker.encode()
    candidates = [path, *path.parent.glob(path.name + "-*")]
    return any(needle in p.read_bytes() for p in candidates if p.exists())
