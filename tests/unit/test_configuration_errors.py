"""A component built with settings that would make it unsafe or unusable refuses to be
built, with ``ConfigurationError`` (never a bare ``ValueError``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects import postgresql

from tenancy.audit import AuditLog
from tenancy.authz.cache import DecisionCache
from tenancy.clock import FrozenClock
from tenancy.consistency import LayerCheck
from tenancy.errors import ConfigurationError
from tenancy.keys import DataKeyCache
from tenancy.propagation.replay import MemoryReplayGuard
from tenancy.retention import EXPORTS_RULE, RetentionJob, RetentionRule
from tenancy.scoping import system_scope
from tenancy.scoping.rls import rls_statements
from tenancy.tenants import TenantRegistry

ENGINE = create_engine("sqlite://")
NOT_TENANT_OWNED = Table(
    "loose", MetaData(), Column("id", Integer, primary_key=True), Column("at", String(30))
)
OWNED = Table(
    "owned",
    MetaData(),
    Column("tenant_id", String(36), primary_key=True),
    Column("id", Integer, primary_key=True),
)


def enter_system_scope() -> None:
    with system_scope("  "):
        pass


MISTAKES: dict[str, Callable[[], Any]] = {
    "naive frozen clock": lambda: FrozenClock(datetime(2026, 1, 1)),
    "layer check without a tenant": lambda: LayerCheck(""),
    "decision cache of no entries": lambda: DecisionCache(max_entries=0),
    "decision cache of no age": lambda: DecisionCache(max_age=0),
    "system scope without a reason": enter_system_scope,
    "rls on a table without tenant_id": lambda: rls_statements(
        NOT_TENANT_OWNED, postgresql.dialect()
    ),
    "rls with an unusable setting name": lambda: rls_statements(
        OWNED, postgresql.dialect(), setting="tenant'; DROP TABLE x; --"
    ),
    "registry cache ttl below zero": lambda: TenantRegistry(ENGINE, cache_ttl=-1),
    "retention rule of no period": lambda: RetentionRule(
        "exports", EXPORTS_RULE.table, "created_at", timedelta(0)
    ),
    "retention rule without a data class": lambda: RetentionRule(
        " ", EXPORTS_RULE.table, "created_at", timedelta(days=1)
    ),
    "retention job of empty batches": lambda: RetentionJob(ENGINE, batch_size=0),
    "audit log of empty batches": lambda: AuditLog(ENGINE, b"k" * 32, batch_max=0),
    "data-key cache of no age": lambda: DataKeyCache(ttl=0),
    "replay guard of no entries": lambda: MemoryReplayGuard(max_entries=0),
}


@pytest.mark.parametrize("build", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_configuration_mistake_is_a_configuration_error(build: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError) as refused:
        build()
    assert not isinstance(refused.value, ValueError)
    assert refused.value.reason == "configuration-error"
