"""Demonstrates a tenant-owned model with an encrypted field, and its schema.

``Worklog`` is ``TenantScoped`` (``tenant_id`` first in the primary key, stamped on
insert, criteria on every statement); ``comment`` is sealed under the tenant's data key,
bound to its row. On PostgreSQL the table is put under forced Row-Level Security and the
application role gets DML only: the owner runs :func:`create_schema`, the service never.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, Date, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenancy.keys import EncryptedString
from tenancy.scoping import TenantScoped
from tenancy.scoping.rls import enable_rls, grant_app_role


class Base(DeclarativeBase):
    """The example's own metadata (its table lives beside the Starlette example's)."""


class Worklog(TenantScoped, Base):
    """Time a person of the tenant logged; ``comment`` is encrypted at rest."""

    __tablename__ = "fastapi_worklogs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    author: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(500))
    minutes: Mapped[int] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str | None] = mapped_column(EncryptedString(), nullable=True)


def create_schema(connection: Connection, *, app_role: str | None = None) -> None:
    """Create the table; on PostgreSQL also force RLS on it and grant ``app_role`` DML
    (run as the owner: the application role can neither create nor alter tables)."""
    Base.metadata.create_all(connection)
    if connection.dialect.name == "postgresql":
        tables = [Worklog.__table__]
        enable_rls(connection, tables)  # type: ignore[arg-type]
        if app_role is not None:
            grant_app_role(connection, app_role, tables)  # type: ignore[arg-type]
