"""Encrypted columns through the ORM: sealed at rest, bound to their row, typed failures."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, String, insert, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from tenancy.context import Principal, TenantContext, bind
from tenancy.errors import DecryptionFailed, UnsealedWrite
from tenancy.keys import (
    EncryptedBytes,
    EncryptedJSON,
    EncryptedString,
    ReencryptionJob,
    TenantKeys,
)
from tenancy.keys.columns import SESSION_KEYS
from tenancy.scoping import TenantScoped, TenantSession
from tenancy.tenants import Tenant
from tests.support.asyncflavour import ASYNC_DRIVERS, AsyncRunner


class Base(DeclarativeBase):
    pass


class Note(TenantScoped, Base):
    __tablename__ = "notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    body: Mapped[str | None] = mapped_column(EncryptedString())
    summary: Mapped[str | None] = mapped_column(EncryptedString())
    blob: Mapped[bytes | None] = mapped_column(EncryptedBytes(), deferred=True)
    meta: Mapped[Any] = mapped_column(EncryptedJSON(), nullable=True)


def ctx_of(tenant: Tenant) -> TenantContext:
    return TenantContext(
        tenant.id, tenant.slug, "eu-central-1", Principal("i", tenant.id, "alice"), "rid"
    )


@pytest.fixture(params=["sync", "async"])
def sessions(
    request: pytest.FixtureRequest,
    engine: Engine,
    tenant_keys: TenantKeys,
    acme: Tenant,
    globex: Tenant,
) -> Iterator[Callable[[], TenantSession]]:
    """``TenantSession``, and the sync face of ``AsyncTenantSession`` over aiosqlite with
    the test run in SQLAlchemy's greenlet (``tests.support.asyncflavour``)."""
    Base.metadata.create_all(engine)
    tenant_keys.provision(acme.id)
    tenant_keys.provision(globex.id)
    info = {SESSION_KEYS: tenant_keys}
    if request.param == "sync":
        yield sessionmaker(engine, class_=TenantSession, expire_on_commit=False, info=info)
        return
    runner = AsyncRunner()
    request.node.async_runner = runner
    try:
        async_engine = runner.engine(engine, ASYNC_DRIVERS["sqlite-aiosqlite"])
        yield runner.sessions(async_engine, expire_on_commit=False, info=info)
    finally:
        runner.close()


def add(sessions: Callable[[], TenantSession], tenant: Tenant, **fields: Any) -> str:
    note_id = str(uuid.uuid4())
    with bind(ctx_of(tenant)), sessions() as session:
        session.add(Note(id=note_id, title="t", **fields))
        session.commit()
    return note_id


def load(sessions: Callable[[], TenantSession], tenant: Tenant, note_id: str) -> Note:
    with bind(ctx_of(tenant)), sessions() as session:
        note = session.get(Note, (tenant.id, note_id))
        assert note is not None
        _ = note.blob  # load the deferred column inside the session
        return note


def test_values_round_trip_and_are_ciphertext_at_rest(
    sessions: Callable[[], TenantSession], engine: Engine, acme: Tenant
) -> None:
    note_id = add(
        sessions,
        acme,
        body="plaintext-marker-body",
        summary=None,
        blob=b"plaintext-marker-bytes",
        meta={"k": "plaintext-marker-json"},
    )
    note = load(sessions, acme, note_id)
    assert (note.body, note.summary, note.blob, note.meta) == (
        "plaintext-marker-body",
        None,
        b"plaintext-marker-bytes",
        {"k": "plaintext-marker-json"},
    )
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT * FROM notes")).fetchall()
    dump = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
        for row in raw
        for v in row
    )
    assert b"plaintext-marker" not in dump
    assert dump.count(b"\x01\x00\x00\x00\x01") == 3  # three sealed values, format v1, DEK v1


def test_updated_value_is_sealed_again(sessions: Callable[[], TenantSession], acme: Tenant) -> None:
    note_id = add(sessions, acme, body="first")
    with bind(ctx_of(acme)), sessions() as session:
        note = session.get(Note, (acme.id, note_id))
        assert note is not None
        note.body = "second"
        session.commit()
        assert note.body == "second"  # the object holds plaintext after the flush
    assert load(sessions, acme, note_id).body == "second"


@pytest.mark.parametrize("move", ["other row", "other column", "other tenant"])
def test_ciphertext_copied_elsewhere_in_the_database_is_refused(
    move: str, sessions: Callable[[], TenantSession], engine: Engine, acme: Tenant, globex: Tenant
) -> None:
    source = add(sessions, acme, body="acme secret", summary="s")
    target_tenant = globex if move == "other tenant" else acme
    target = add(sessions, target_tenant, body="mine", summary="mine")
    column = "summary" if move == "other column" else "body"
    with engine.begin() as conn:
        stolen = conn.execute(
            text("SELECT body FROM notes WHERE id = :i"), {"i": source}
        ).scalar_one()
        conn.execute(
            text(f"UPDATE notes SET {column} = :c WHERE id = :i"), {"c": stolen, "i": target}
        )
    with pytest.raises(DecryptionFailed):
        load(sessions, target_tenant, target)
    assert load(sessions, acme, source).body == "acme secret"  # the original is untouched


def test_a_marking_session_loads_a_damaged_value_as_unreadable(
    sessions: Callable[[], TenantSession], engine: Engine, acme: Tenant, tenant_keys: TenantKeys
) -> None:
    from tenancy.keys.columns import UNREADABLE, unreadable_fields

    damaged = add(sessions, acme, body="will be damaged", summary="intact")
    with engine.begin() as conn:
        raw = bytearray(
            conn.execute(text("SELECT body FROM notes WHERE id = :i"), {"i": damaged}).scalar_one()
        )
        raw[-1] ^= 0x80
        conn.execute(
            text("UPDATE notes SET body = :c WHERE id = :i"), {"c": bytes(raw), "i": damaged}
        )
    with pytest.raises(DecryptionFailed):  # the default: the query fails
        load(sessions, acme, damaged)
    marking = sessionmaker(
        engine,
        class_=TenantSession,
        expire_on_commit=False,
        info={SESSION_KEYS: tenant_keys, UNREADABLE: "mark"},
    )
    note = load(marking, acme, damaged)
    assert note.body is None and note.summary == "intact"
    assert unreadable_fields(note) == {"body"}


def test_plaintext_never_reaches_the_column_outside_the_orm(
    sessions: Callable[[], TenantSession], acme: Tenant
) -> None:
    with bind(ctx_of(acme)), sessions() as session, pytest.raises(StatementError) as refused:
        session.execute(insert(Note).values(tenant_id=acme.id, id="x", title="t", body="plain"))
    assert isinstance(refused.value.orig, UnsealedWrite)


def test_session_without_keys_refuses_to_write_encrypted_values(
    engine: Engine, sessions: Callable[[], TenantSession], acme: Tenant
) -> None:
    bare = sessionmaker(engine, class_=TenantSession)
    with bind(ctx_of(acme)), bare() as session, pytest.raises(UnsealedWrite):
        session.add(Note(id="n", title="t", body="plain"))
        session.commit()


def test_reencryption_moves_every_row_to_the_new_data_key(
    sessions: Callable[[], TenantSession], tenant_keys: TenantKeys, engine: Engine, acme: Tenant
) -> None:
    ids = [add(sessions, acme, body=f"note {i}", meta={"i": i}) for i in range(7)]
    tenant_keys.rotate_data_key(acme.id, "notes")
    seen: list[tuple[int, int]] = []
    result = ReencryptionJob(
        sessions,
        Note,
        ctx_of(acme),
        batch_size=3,
        progress=lambda p: seen.append((p.done, p.total)),
    ).run()
    assert (result.done, result.total) == (7, 7) and seen == [(3, 7), (6, 7), (7, 7)]
    with engine.connect() as conn:
        versions = {
            bytes(v)[4]
            for v in conn.execute(
                text("SELECT body FROM notes UNION ALL SELECT meta FROM notes")
            ).scalars()
            if v is not None
        }
    assert versions == {2}
    tenant_keys.retire_data_key(acme.id, "notes", 1)
    assert [load(sessions, acme, i).body for i in ids] == [f"note {i}" for i in range(7)]


def test_queries_without_encrypted_columns_need_no_key(
    sessions: Callable[[], TenantSession], tenant_keys: TenantKeys, platform: Any, acme: Tenant
) -> None:
    add(sessions, acme, body="b")
    kek = tenant_keys.status(acme.id).kek
    assert kek is not None
    platform.disable(kek.ref)
    tenant_keys.cache.forget(acme.id)
    tenant_keys._current.clear()
    with bind(ctx_of(acme)), sessions() as session:
        assert session.scalars(select(Note.title)).all() == ["t"]
