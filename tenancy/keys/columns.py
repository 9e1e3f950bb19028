"""Encrypted columns: ``EncryptedString``, ``EncryptedBytes``, ``EncryptedJSON``.

Values are sealed with the tenant's data key and bound to tenant, table, column and the
row's primary key (``tenancy.keys.envelope``), so a ciphertext copied to another row,
column or tenant does not decrypt. The binding needs the row, which a column type alone
never sees, so the work happens in ``TenantSession`` events:

- before a flush, each new or changed encrypted value is sealed (primary keys must be
  set by the application, e.g. UUIDs) and the ciphertext is what the INSERT/UPDATE
  sends; after the flush the object holds the plaintext again;
- when a row is loaded (or a deferred column is loaded later), the ciphertext is opened
  and the attribute holds the plaintext. A ``KeyUnavailable`` (the customer revoked its
  key) surfaces there, typed; columns that are not encrypted keep working.

The session finds its key service in ``session.info["tenancy_keys"]``; give it with
``sessionmaker(..., class_=TenantSession, info={"tenancy_keys": keys})`` (or
``async_sessionmaker(..., class_=AsyncTenantSession, info=...)``: there a key operation
that would wait on a key store, KMS or HSM runs in a worker thread, never on the event
loop; see ``tenancy.keys.blocking``).

A value that fails its integrity check (tampered, or copied from another row, column or
tenant) raises ``DecryptionFailed`` by default, which fails the whole query. A session
with ``info["tenancy_unreadable"] = "mark"`` instead loads such a value as ``None``,
records the attribute in :func:`unreadable_fields` and emits ``key.decrypt_failed``: one
damaged row then does not deny the tenant every other row, and no wrong value is ever
returned. A key that is unavailable or destroyed still fails the query (``KeyUnavailable``,
``KeyDestroyed``): that is the tenant's state, not one row's. A value that
reaches the database unsealed (a Core statement, a session without keys) is refused
with ``UnsealedWrite``. Declare encrypted columns ``deferred=True`` to let queries that
do not need them run without any key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import Dialect, LargeBinary, event
from sqlalchemy.orm import Mapper, Session, UOWTransaction, attributes, object_mapper
from sqlalchemy.orm.exc import UnmappedInstanceError
from sqlalchemy.types import TypeDecorator

from tenancy.context import current_or_none
from tenancy.errors import ConfigurationError, DecryptionFailed, KeyUnavailable, UnsealedWrite
from tenancy.keys import blocking
from tenancy.keys.envelope import Binding
from tenancy.scoping.orm import TenantSession

SESSION_KEYS = "tenancy_keys"
UNREADABLE = "tenancy_unreadable"  # session info: "raise" (default) or "mark"
_SEALED = "tenancy_sealed"
_UNREADABLE_FIELDS = "tenancy_unreadable_fields"


def unreadable_fields(obj: object) -> frozenset[str]:
    """The encrypted attributes of ``obj`` that failed their integrity check when it was
    loaded by a session with ``info["tenancy_unreadable"] = "mark"`` (they hold None)."""
    return frozenset(attributes.instance_state(obj).info.get(_UNREADABLE_FIELDS, ()))


class Sealed:
    """A ciphertext on its way to the database (only during a flush)."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: bytes) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return f"Sealed({len(self.ciphertext)} bytes)"


class Ciphertext(bytes):
    """Bytes loaded from an encrypted column, not yet opened."""


def _encode_text(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("EncryptedString holds str")
    return value.encode("utf-8")


def _encode_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise TypeError("EncryptedBytes holds bytes")
    return bytes(value)


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


class _Encrypted(TypeDecorator[Any]):
    """The column side: only ``Sealed`` values go in, ``Ciphertext`` comes out. Each
    concrete type names how its Python values become bytes and back (its codec)."""

    impl = LargeBinary
    cache_ok = True
    codec: ClassVar[tuple[Callable[[Any], bytes], Callable[[bytes], Any]]]

    def __init__(self, purpose: str | None = None) -> None:
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.ciphertext
        raise UnsealedWrite("an encrypted column was written without encryption")

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else Ciphertext(bytes(value))

    def encode(self, value: Any) -> bytes:
        return self.codec[0](value)

    def decode(self, raw: bytes) -> Any:
        return self.codec[1](raw)


class EncryptedString(_Encrypted):
    """Text, encrypted at rest (UTF-8)."""

    cache_ok = True
    codec = (_encode_text, lambda raw: raw.decode("utf-8"))


class EncryptedBytes(_Encrypted):
    """Bytes, encrypted at rest."""

    cache_ok = True
    codec = (_encode_bytes, bytes)


class EncryptedJSON(_Encrypted):
    """Any JSON value, encrypted at rest (canonical JSON)."""

    cache_ok = True
    codec = (_encode_json, json.loads)


def _encrypted_columns(mapper: Mapper[Any]) -> list[tuple[str, str, _Encrypted]]:
    found = []
    for prop in mapper.column_attrs:
        for column in prop.columns:
            if isinstance(column.type, _Encrypted):
                found.append((prop.key, column.name, column.type))
    return found


def _binding(obj: Any, mapper: Mapper[Any], column: str) -> Binding:
    identity = mapper.primary_key_from_instance(obj)
    if any(value is None for value in identity):
        raise ConfigurationError(
            "rows with encrypted columns need their primary key set "
            "before flush (it is part of the associated data)"
        )
    tenant_id = getattr(obj, "tenant_id", None)
    if tenant_id is None:
        ctx = current_or_none()
        tenant_id = None if ctx is None else ctx.tenant_id
    if tenant_id is None:
        raise ConfigurationError("encrypted columns belong to tenant-owned rows")
    row_key = "/".join(str(value) for value in identity)
    return Binding(str(tenant_id), _table_name(mapper), column, row_key)


def _table_name(mapper: Mapper[Any]) -> str:
    name = getattr(mapper.local_table, "name", None)
    if not isinstance(name, str):
        raise ConfigurationError("encrypted columns need a mapped table")
    return name


def _keys(session: Session) -> Any:
    keys = session.info.get(SESSION_KEYS)
    if keys is None:
        raise UnsealedWrite("this session has no key service (info['tenancy_keys'])")
    return keys


@event.listens_for(TenantSession, "before_flush")
def _seal_before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    for obj in (*session.new, *session.dirty):
        try:
            mapper = object_mapper(obj)
        except UnmappedInstanceError:
            continue
        columns = _encrypted_columns(mapper)
        if not columns:
            continue
        state = attributes.instance_state(obj)
        for key, column, kind in columns:
            value = state.dict.get(key)
            if value is None or isinstance(value, Sealed | Ciphertext):
                continue
            if obj in session.dirty and not state.attrs[key].history.has_changes():
                continue
            binding = _binding(obj, mapper, column)
            purpose = kind.purpose or _table_name(mapper)
            ciphertext = blocking.call(
                _keys(session).encrypt, kind.encode(value), binding, purpose=purpose
            )
            state.info.setdefault(_SEALED, {})[key] = value
            setattr(obj, key, Sealed(ciphertext))


@event.listens_for(TenantSession, "after_flush_postexec")
def _reveal_after_flush(session: Session, flush_context: UOWTransaction) -> None:
    for obj in session.identity_map.values():
        state = attributes.instance_state(obj)
        plain = state.info.pop(_SEALED, None)
        if plain:
            for key, value in plain.items():
                attributes.set_committed_value(obj, key, value)


def _open_loaded(target: Any, context: Any, attrs: Any = None) -> None:
    mapper = object_mapper(target)
    columns = _encrypted_columns(mapper)
    if not columns:
        return
    state = attributes.instance_state(target)
    session = context.session
    for key, column, kind in columns:
        value = state.dict.get(key)
        if not isinstance(value, Ciphertext):
            continue
        keys = session.info.get(SESSION_KEYS) if session is not None else None
        if keys is None:
            raise KeyUnavailable("this session has no key service to open encrypted columns")
        binding = _binding(target, mapper, column)
        purpose = kind.purpose or _table_name(mapper)
        try:
            plain = kind.decode(blocking.call(keys.decrypt, bytes(value), binding, purpose=purpose))
        except DecryptionFailed:
            if session is None or session.info.get(UNREADABLE, "raise") != "mark":
                raise
            keys.report_unreadable(binding, purpose=purpose)
            state.info.setdefault(_UNREADABLE_FIELDS, set()).add(key)
            plain = None
        attributes.set_committed_value(target, key, plain)


event.listen(Mapper, "load", _open_loaded)
event.listen(Mapper, "refresh", _open_loaded)
