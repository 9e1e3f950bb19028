"""The example second data class: identity mappings (``tenancy_identity_mappings``).

A migration platform keeps, per tenant, which external account maps to which local
user, and notifies the person once the mapping exists. Such a mapping is personal data
(an e-mail address) that is only needed for a while: the default rule deletes it 14
days after the first notification (``first_notified_at``; a mapping never notified is
never due). Worklogs hold nothing like it, so this minimal table stands in for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Engine, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenancy.scoping import TenantScoped, tenant_unique

MAPPINGS_TABLE = "tenancy_identity_mappings"


class RetentionBase(DeclarativeBase):
    """The declarative base of the retention tables: metadata of their own, which
    ``create_schema`` creates apart from the application's tables."""


class IdentityMapping(TenantScoped, RetentionBase):
    """An external identity mapped to a person of the tenant (data class ``mappings``)."""

    __tablename__ = MAPPINGS_TABLE
    __table_args__ = (
        tenant_unique("external_id", name="uq_tenancy_identity_mappings_external"),
        Index("ix_tenancy_identity_mappings_notified", "tenant_id", "first_notified_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_notified_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


def create_schema(engine: Engine) -> None:
    """Create the mappings table (SQLite and tests; PostgreSQL gets it from a migration)."""
    RetentionBase.metadata.create_all(engine)
