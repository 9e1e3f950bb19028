"""Retention fixtures: the exports fixtures, plus the mappings table."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import Engine, func, insert, select

from tenancy.retention import IdentityMapping, create_schema
from tests.unit.exports.conftest import (  # noqa: F401  (fixtures)
    exports,
    notes,
    tenant_keys,
)


@pytest.fixture
def mappings(engine: Engine) -> Engine:
    create_schema(engine)
    return engine


def add_mapping(
    engine: Engine, tenant_id: str, notified: datetime | None, created: datetime
) -> str:
    mapping_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            insert(IdentityMapping).values(
                tenant_id=tenant_id,
                id=mapping_id,
                external_id=f"ext-{mapping_id}",
                email=f"{mapping_id[:8]}@example.test",
                created_at=created,
                first_notified_at=notified,
            )
        )
    return mapping_id


def count(engine: Engine, model: type[object], tenant_id: str | None = None) -> int:
    query = select(func.count()).select_from(model)
    if tenant_id is not None:
        query = query.where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
