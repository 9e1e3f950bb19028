"""The ``tenancy_exports`` table: one row per export, tenant-owned (``tenant_id`` first in
the primary key), its content sealed under the tenant's data key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Engine, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenancy.keys import EncryptedBytes
from tenancy.scoping import TenantScoped

EXPORTS_TABLE = "tenancy_exports"
EXPORT_PURPOSE = "exports"


class ExportBase(DeclarativeBase):
    """The metadata of the export tables (kept apart from any application's models)."""


class ExportRecord(TenantScoped, ExportBase):
    """A snapshot of a tenant's data, downloadable through a signed link until
    ``expires_at`` and deleted by the retention job (data class ``exports``)."""

    __tablename__ = EXPORTS_TABLE
    __table_args__ = (Index("ix_tenancy_exports_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    format: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    # Sealed with the tenant's data key for purpose "exports", bound to this row. Deferred,
    # so listing and retention never need the key.
    content: Mapped[bytes] = mapped_column(EncryptedBytes(purpose=EXPORT_PURPOSE), deferred=True)


def create_schema(engine: Engine) -> None:
    """Create the exports table (SQLite and tests; PostgreSQL gets it from a migration)."""
    ExportBase.metadata.create_all(engine)
