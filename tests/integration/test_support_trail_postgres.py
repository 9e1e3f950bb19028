"""Concurrent uses of one grant on PostgreSQL, as the application role under forced RLS:
the grant's row lock serializes the trail's appends (READ COMMITTED alone would let two
transactions claim the same ``seq``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from tenancy.scoping.rls import enable_rls, grant_app_role
from tenancy.support import MemoryNotifier, SupportAccess
from tenancy.support.store import metadata
from tenancy.tenants import Tenant
from tests.support.postgres import app_role_database
from tests.unit.support.test_trail_concurrency import check, hammer

pytestmark = pytest.mark.postgres


def support_tables(conn: Connection, role: str) -> None:
    """The support grants and their trail, as the owner's migrations would make them."""
    metadata.create_all(conn)
    enable_rls(conn, metadata.sorted_tables)
    grant_app_role(conn, role, metadata.sorted_tables)


def test_concurrent_uses_of_one_grant_all_reach_its_trail(acme: Tenant) -> None:
    with app_role_database(support_tables, prefix="tenancy_trail") as (_owner, app):
        notices = MemoryNotifier()
        support = SupportAccess(app, notifier=notices)
        check(hammer(support, acme), notices)
