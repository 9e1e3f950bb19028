"""Where wrapped data keys live: two tables, tenant-owned, under RLS on PostgreSQL.

``tenancy_tenant_keks`` names each tenant's platform KEK (provider, key id), the
customer's key that wraps on top of it for CMK tenants, the tenant's data-key cache TTL
and the KEK versions waiting to be destroyed; ``tenancy_data_keys`` holds every data key
version wrapped by them, with the exact KEK (and customer key) version that wrapped it,
its state and an approximate message count. Neither holds key material in the clear.
``tenant_id`` leads both primary keys, like every tenant-owned table; every transaction
here sets the RLS tenant setting first.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from tenancy.keys.provider import KeyRef
from tenancy.scoping.rls import tenant_transaction

metadata = MetaData()

tenant_keks = Table(
    "tenancy_tenant_keks",
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("key_id", String(512), nullable=False),
    Column("managed_by", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("cmk_provider", String(32)),
    Column("cmk_key_id", String(512)),
    Column("cache_ttl", Float),
    # KEK versions replaced by a rotation, destroyed once their grace period is over:
    # JSON {"<version>": "<ISO time to destroy at>"}.
    Column("retiring", Text),
)

data_keys = Table(
    "tenancy_data_keys",
    metadata,
    Column("tenant_id", String(36), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("kek_provider", String(32), nullable=False),
    Column("kek_id", String(512), nullable=False),
    Column("kek_version", String(32)),
    Column("state", String(16), nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("cmk_provider", String(32)),
    Column("cmk_key_id", String(512)),
    Column("cmk_version", String(128)),
    PrimaryKeyConstraint("tenant_id", "purpose", "version"),
)


@dataclass(frozen=True, slots=True)
class KekRecord:
    """A tenant's keys: the platform KEK (``ref``), the customer's key on top of it
    (``cmk``, for CMK tenants), the data-key cache TTL (None: the default) and the KEK
    versions due for destruction at the given times."""

    tenant_id: str
    ref: KeyRef
    managed_by: str
    state: str
    cmk: KeyRef | None = None
    cache_ttl: float | None = None
    retiring: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True, slots=True)
class DataKeyRecord:
    """One row of ``tenancy_data_keys``: a data key version as stored, wrapped (never in the
    clear), with the exact KEK version (``kek``) and, for CMK tenants, the customer key
    version (``cmk``) that wrapped it. ``messages`` is an approximate count of what it
    encrypted."""

    tenant_id: str
    purpose: str
    version: int
    wrapped: bytes
    kek: KeyRef
    state: str
    messages: int
    created_at: datetime
    cmk: KeyRef | None = None


class DataKeyStore:
    """Reads and writes the two tables for one tenant per transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_schema(self) -> None:
        """Create both tables where missing, without RLS policies: on PostgreSQL those come
        from a migration (``tenancy.scoping.rls.migration_statements``)."""
        metadata.create_all(self._engine)

    def transaction(self, tenant_id: str) -> AbstractContextManager[Connection]:
        """A transaction scoped to ``tenant_id`` (on PostgreSQL the RLS setting is applied
        first); every method below expects a connection from here."""
        return tenant_transaction(self._engine, tenant_id)

    def kek(self, conn: Connection, tenant_id: str) -> KekRecord | None:
        """The tenant's KEK record, or None if the tenant has no key yet.

        The ``WHERE tenant_id`` clause is the only isolation on databases without RLS, so
        ``tenant_id`` must be the tenant the transaction was opened for.
        """
        row = conn.execute(select(tenant_keks).where(tenant_keks.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        cmk = None if row.cmk_provider is None else KeyRef(row.cmk_provider, row.cmk_key_id)
        retiring = tuple(
            (version, datetime.fromisoformat(at))
            for version, at in json.loads(row.retiring or "{}").items()
        )
        return KekRecord(
            row.tenant_id,
            KeyRef(row.provider, row.key_id),
            row.managed_by,
            row.state,
            cmk,
            row.cache_ttl,
            retiring,
        )

    def put_kek(self, conn: Connection, record: KekRecord, now: datetime) -> None:
        """Insert or replace the tenant's KEK record, stamped ``updated_at=now``. An update
        followed by an insert when no row matched: two first writes racing for one tenant
        end with a primary-key violation, not with two records."""
        values = {
            "provider": record.ref.provider,
            "key_id": record.ref.key_id,
            "managed_by": record.managed_by,
            "state": record.state,
            "updated_at": now,
            "cmk_provider": None if record.cmk is None else record.cmk.provider,
            "cmk_key_id": None if record.cmk is None else record.cmk.key_id,
            "cache_ttl": record.cache_ttl,
            "retiring": json.dumps({v: at.isoformat() for v, at in record.retiring}),
        }
        done = conn.execute(
            update(tenant_keks).where(tenant_keks.c.tenant_id == record.tenant_id).values(**values)
        )
        if done.rowcount == 0:
            conn.execute(tenant_keks.insert().values(tenant_id=record.tenant_id, **values))

    def data_key(
        self, conn: Connection, tenant_id: str, purpose: str, version: int | None = None
    ) -> DataKeyRecord | None:
        """A given version, or the newest active one."""
        query = select(data_keys).where(
            data_keys.c.tenant_id == tenant_id, data_keys.c.purpose == purpose
        )
        if version is None:
            query = (
                query.where(data_keys.c.state == "active")
                .order_by(data_keys.c.version.desc())
                .limit(1)
            )
        else:
            query = query.where(data_keys.c.version == version)
        row = conn.execute(query).first()
        return None if row is None else _record(row)

    def data_keys_of(self, conn: Connection, tenant_id: str) -> list[DataKeyRecord]:
        """Every data key version of the tenant, any state, ordered by purpose and version."""
        rows = conn.execute(
            select(data_keys)
            .where(data_keys.c.tenant_id == tenant_id)
            .order_by(data_keys.c.purpose, data_keys.c.version)
        )
        return [_record(row) for row in rows]

    def next_version(self, conn: Connection, tenant_id: str, purpose: str) -> int:
        """The next data key version for ``purpose`` (1 for the first). Two transactions
        racing get the same number; the second insert then fails on the primary key instead
        of replacing the first key."""
        current = conn.execute(
            select(func.max(data_keys.c.version)).where(
                data_keys.c.tenant_id == tenant_id, data_keys.c.purpose == purpose
            )
        ).scalar()
        return int(current or 0) + 1

    def add_data_key(self, conn: Connection, record: DataKeyRecord) -> None:
        """Insert a new data key version. The caller wraps it first: the store never sees
        key material in the clear.

        Raises:
            sqlalchemy.exc.IntegrityError: the (tenant, purpose, version) already exists.
        """
        conn.execute(
            data_keys.insert().values(
                tenant_id=record.tenant_id,
                purpose=record.purpose,
                version=record.version,
                wrapped=record.wrapped,
                kek_provider=record.kek.provider,
                kek_id=record.kek.key_id,
                kek_version=record.kek.version,
                state=record.state,
                messages=record.messages,
                created_at=record.created_at,
                **_cmk_columns(record.cmk),
            )
        )

    def rewrap(
        self,
        conn: Connection,
        record: DataKeyRecord,
        wrapped: bytes,
        kek: KeyRef,
        cmk: KeyRef | None,
    ) -> None:
        """Replace the wrapped bytes of one data key version and record the KEK (and
        customer key) version that now wraps it. The data key itself is unchanged, so
        ciphertexts under it stay readable; a version that does not exist is silently left
        alone."""
        conn.execute(
            update(data_keys)
            .where(
                data_keys.c.tenant_id == record.tenant_id,
                data_keys.c.purpose == record.purpose,
                data_keys.c.version == record.version,
            )
            .values(
                wrapped=wrapped,
                kek_provider=kek.provider,
                kek_id=kek.key_id,
                kek_version=kek.version,
                **_cmk_columns(cmk),
            )
        )

    def retire(self, conn: Connection, tenant_id: str, purpose: str, version: int) -> None:
        """Mark one data key version ``retired``: it stops being chosen for new encryptions,
        and stays readable for existing ciphertexts. A missing version is a silent no-op."""
        conn.execute(
            update(data_keys)
            .where(
                data_keys.c.tenant_id == tenant_id,
                data_keys.c.purpose == purpose,
                data_keys.c.version == version,
            )
            .values(state="retired")
        )

    def count_messages(
        self, conn: Connection, tenant_id: str, purpose: str, version: int, messages: int
    ) -> None:
        """Add ``messages`` to a data key version's message count (an increment in SQL, so
        concurrent processes do not lose each other's counts)."""
        conn.execute(
            update(data_keys)
            .where(
                data_keys.c.tenant_id == tenant_id,
                data_keys.c.purpose == purpose,
                data_keys.c.version == version,
            )
            .values(messages=data_keys.c.messages + messages)
        )

    def forget_data_keys(self, conn: Connection, tenant_id: str) -> int:
        """Delete every wrapped data key of the tenant (crypto-shredding) and return how
        many rows went. Irreversible: whatever they encrypted cannot be decrypted
        afterwards."""
        return int(
            conn.execute(data_keys.delete().where(data_keys.c.tenant_id == tenant_id)).rowcount
        )


def _record(row: Row[Any]) -> DataKeyRecord:
    cmk = (
        None
        if row.cmk_provider is None
        else KeyRef(row.cmk_provider, row.cmk_key_id, row.cmk_version)
    )
    return DataKeyRecord(
        tenant_id=row.tenant_id,
        purpose=row.purpose,
        version=int(row.version),
        wrapped=bytes(row.wrapped),
        kek=KeyRef(row.kek_provider, row.kek_id, row.kek_version),
        state=row.state,
        messages=int(row.messages),
        created_at=row.created_at,
        cmk=cmk,
    )


def _cmk_columns(cmk: KeyRef | None) -> dict[str, str | None]:
    if cmk is None:
        return {"cmk_provider": None, "cmk_key_id": None, "cmk_version": None}
    return {"cmk_provider": cmk.provider, "cmk_key_id": cmk.key_id, "cmk_version": cmk.version}
