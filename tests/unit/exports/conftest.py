"""Export fixtures: tenant keys under a local provider, a small tenant-scoped notes table
(the rows exported), the service."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from tenancy.clock import FrozenClock
from tenancy.context import Principal, TenantContext, current
from tenancy.events import MemorySink
from tenancy.exports import ExportService, create_schema
from tenancy.keys import EncryptedString, LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.columns import SESSION_KEYS
from tenancy.scoping import TenantScoped, TenantSession
from tenancy.tenants import Tenant

SIGNING_KEY = b"k" * 32
FIELDS = ("id", "author", "description", "minutes", "comment")


class Base(DeclarativeBase):
    pass


class Note(TenantScoped, Base):
    __tablename__ = "notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    author: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(500))
    minutes: Mapped[int] = mapped_column(Integer)
    # Encrypted at rest under the tenant's data key, bound to this row (tenancy.keys).
    comment: Mapped[str] = mapped_column(EncryptedString())


class Notes:
    """The bound tenant's notes, through the scoping layer: what an export source reads."""

    def __init__(self, engine: Engine, *, keys: TenantKeys) -> None:
        self._sessions = sessionmaker(
            engine, class_=TenantSession, expire_on_commit=False, info={SESSION_KEYS: keys}
        )
        Base.metadata.create_all(engine)

    def add(self, description: str, *, comment: str) -> str:
        note = Note(
            id=str(uuid.uuid4()),
            author=current().principal.subject,
            description=description,
            minutes=30,
            comment=comment,
        )
        with self._sessions() as session:
            session.add(note)
            session.commit()
        return note.id

    def list(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return [
                {name: getattr(note, name) for name in ("tenant_id", *FIELDS)}
                for note in session.scalars(select(Note).order_by(Note.id))
            ]


def ctx_of(tenant: Tenant, sub: str = "alice") -> TenantContext:
    return TenantContext(
        tenant.id,
        tenant.slug,
        "eu-central-1",
        Principal("https://issuer.test", tenant.id, sub),
        "rid-1",
    )


@pytest.fixture
def tenant_keys(
    engine: Engine,
    tmp_path: Path,
    clock: FrozenClock,
    events: MemorySink,
    acme: Tenant,
    globex: Tenant,
) -> TenantKeys:
    root = RootKey.load_or_create(tmp_path / "keys" / "root.key")
    keys = TenantKeys(
        engine,
        [LocalKeyProvider(tmp_path / "keys" / "keks.json", root=root)],
        clock=clock,
        events=events,
    )
    keys.create_schema()
    keys.provision(acme.id)
    keys.provision(globex.id)
    return keys


@pytest.fixture
def notes(engine: Engine, tenant_keys: TenantKeys) -> Notes:
    return Notes(engine, keys=tenant_keys)


def export_service(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    **kwargs: object,
) -> ExportService:
    create_schema(engine)
    kwargs.setdefault("signing_key", SIGNING_KEY)
    kwargs.setdefault("fields", FIELDS)
    return ExportService(
        engine,
        source=notes.list,
        keys=tenant_keys,
        clock=clock,
        events=events,
        **kwargs,
    )  # type: ignore[arg-type]


@pytest.fixture
def exports(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
) -> ExportService:
    return export_service(engine, notes, tenant_keys, clock, events)
