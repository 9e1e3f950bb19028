"""Two tenant-owned models and two tenants, shared by the scoping and RLS tests."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tenancy.context import Principal, TenantContext
from tenancy.scoping import TenantScoped, tenant_foreign_key, tenant_unique

A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"


class Base(DeclarativeBase):
    pass


class Project(TenantScoped, Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    tasks: Mapped[list[Task]] = relationship(back_populates="project", lazy="select")


class Task(TenantScoped, Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(String(100))
    project: Mapped[Project] = relationship(back_populates="tasks")
    # The foreign key includes tenant_id: a task can only point at its own tenant's project.
    __table_args__ = (
        tenant_foreign_key(["project_id"], "projects", ["id"]),
        tenant_unique("title", name="tasks_title_per_tenant"),
    )


def ctx(tenant: str) -> TenantContext:
    return TenantContext(
        tenant_id=tenant,
        tenant_slug=tenant[-1],
        region="eu-central-1",
        principal=Principal(issuer="i", tenant_id=tenant, subject="s"),
        request_id="r",
    )
