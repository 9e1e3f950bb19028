"""Concurrent uses of one grant on PostgreSQL, as the application role under forced RLS:
the grant's row lock serializes the trail's appends (READ COMMITTED alone would let two
transactions claim the same ``seq``)."""

from __future__ import annotations

import pytest

from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.tenants import Tenant
from tests.integration.test_db_matrix import migrated_worklogs
from tests.unit.support.test_trail_concurrency import check, hammer

pytestmark = pytest.mark.postgres


def test_concurrent_uses_of_one_grant_all_reach_its_trail(acme: Tenant) -> None:
    with migrated_worklogs() as (_owner, app):
        notices = MemoryNotifier()
        support = SupportAccess(app, notifier=notices)
        check(hammer(support, acme), notices)
