"""Demonstrates plugging an application's data into the library's commands.

``tenancy export create`` exports what an *export source* returns, and ``tenancy
retention erase`` empties the tables a deployment declares as holding personal data; the
library names no application table itself. The examples' distribution registers both
for the worklogs (``examples/pyproject.toml``, entry point groups
``tenancy.export_sources`` and ``tenancy.erasure_tables``).
"""

from __future__ import annotations

import functools

from sqlalchemy import Engine, Table

from tenancy.exports import ExportSource
from tenancy.keys import TenantKeys
from tenancy.settings import Settings
from tenancy_examples.worklogs.store import Base, WorklogStore

# The worklogs' public fields, in CSV column order.
WORKLOG_FIELDS = ("id", "author", "description", "minutes", "day", "comment", "created_at")
# Erased with the tenant (its keys are shredded as well, so the comments were unreadable).
ERASURE_TABLES: tuple[Table, ...] = (Base.metadata.tables["worklogs"],)


def export_source(settings: Settings, *, engine: Engine, keys: TenantKeys) -> ExportSource:
    """The bound tenant's worklogs (the store is tenant-scoped), comments decrypted."""
    store = WorklogStore(engine, keys=keys)
    if settings.uses_sqlite:
        store.create_schema()  # on PostgreSQL the migrations create it, as the owner
    return ExportSource(rows=functools.partial(store.list, limit=100_000), fields=WORKLOG_FIELDS)
