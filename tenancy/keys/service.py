"""Per-tenant envelope encryption: data keys per tenant and purpose under the tenant's KEK.

``TenantKeys`` is the one entry point. It provisions a tenant's KEK with a provider
(platform-managed or the customer's), creates and rotates data keys (by age and by
message count, far below the 2^32 random-nonce limit), unwraps them through the
provider (retrying transient outages with backoff, never falling back to another key or
to plaintext), keeps unwrapped keys in a short-lived cache, re-wraps every data key when
the KEK rotates or the tenant switches provider (no data re-encryption), and destroys
the tenant's keys when it is offboarded. Every wrap, unwrap, rotation and destruction
is a ``key.*`` security event naming tenant, key, purpose, principal and support grant.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tenancy import consistency
from tenancy.clock import SYSTEM_CLOCK, Clock, as_utc
from tenancy.context import current_or_none
from tenancy.errors import (
    ConfigurationError,
    KeyDestroyed,
    KeyUnavailable,
    TenantContextConflict,
    UnknownKeyVersion,
)
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.keys.cache import DataKeyCache
from tenancy.keys.envelope import DEK_BYTES, Binding, DataKey, header_version, open_, seal
from tenancy.keys.provider import KeyInfo, KeyProvider, KeyRef, ProviderUnavailable
from tenancy.keys.store import DataKeyRecord, DataKeyStore, KekRecord

if TYPE_CHECKING:
    from tenancy.residency.keys import KeyResidency

T = TypeVar("T")
DEFAULT_PURPOSE = "default"
# Random 96-bit nonces: NIST bounds a key at 2^32 messages; rotate a thousand times sooner.
DEFAULT_MAX_MESSAGES = 2**22
COUNT_FLUSH_EVERY = 1024
_CREATE_RACES = 3  # a lost race to create a data key is retried, reading the winner's


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What ``tenancy keys status`` shows: the KEK and every data key, no material."""

    tenant_id: str
    kek: KekRecord | None
    kek_info: KeyInfo | None
    data_keys: tuple[DataKeyRecord, ...]


class TenantKeys:
    """Encrypt and decrypt tenant data; manage the tenant's keys.

    Args:
        engine: where wrapped data keys are stored (``tenancy.keys.store``).
        providers: the key providers by name; ``default_provider`` names the one new
            tenants get (platform-managed).
        cache: unwrapped data keys (TTL: how long a revoked CMK still reads).
        dek_max_age / dek_max_messages: when a data key is replaced by a new version.
        retries / backoff: transient provider outages are retried ``retries`` times,
            waiting ``backoff * 2**attempt`` seconds, then ``KeyUnavailable``.
    """

    def __init__(self, engine: Engine, providers: Iterable[KeyProvider], *,
                 default_provider: str = "local", cache: DataKeyCache | None = None,
                 dek_max_age: timedelta = timedelta(days=90),
                 dek_max_messages: int = DEFAULT_MAX_MESSAGES,
                 events: EventSink | None = None, clock: Clock = SYSTEM_CLOCK,
                 retries: int = 3, backoff: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep,
                 residency: KeyResidency | None = None) -> None:
        self._residency = residency
        self._providers = {p.name: p for p in providers}
        if default_provider not in self._providers:
            raise ConfigurationError(f"no key provider named {default_provider!r}")
        if not 1 <= dek_max_messages <= 2**32 // 1024:
            raise ConfigurationError("dek_max_messages must stay far below 2^32")
        self.store = DataKeyStore(engine)
        self._default = default_provider
        self.cache = cache if cache is not None else DataKeyCache()
        self._max_age = dek_max_age
        self._max_messages = dek_max_messages
        self._events = events if events is not None else LoggingSink()
        self._clock = clock
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        # Messages sealed by this process per data key: in all, and not yet in the database.
        self._sent: dict[tuple[str, str, int], int] = {}
        self._unflushed: dict[tuple[str, str, int], int] = {}
        self._current: dict[tuple[str, str], tuple[DataKeyRecord, float, int, float]] = {}
        self._count_lock = threading.Lock()

    def create_schema(self) -> None:
        self.store.create_schema()

    # -- tenant keys -------------------------------------------------------------------

    def provision(self, tenant_id: str, *, provider: str | None = None,
                  key: KeyRef | None = None) -> KekRecord:
        """Give a tenant its KEK: a new platform-managed one, or an existing customer key
        (``key``, in ``provider``). Idempotent for a tenant that already has one."""
        with self.store.transaction(tenant_id) as conn:
            existing = self.store.kek(conn, tenant_id)
            if existing is not None and key is None:
                return existing
        chosen = self.provider(provider or (key.provider if key else self._default))
        ref = key or self._call(lambda: chosen.create_key(tenant_id=tenant_id))
        self._check_region(tenant_id, chosen, ref)
        managed_by = "customer" if key is not None else "platform"
        record = KekRecord(tenant_id, KeyRef(ref.provider, ref.key_id), managed_by, "active")
        with self.store.transaction(tenant_id) as conn:
            self.store.put_kek(conn, record, self._clock.now())
        self._emit("key.provision", tenant_id, ref, managed_by=managed_by)
        return record

    def use_provider(self, tenant_id: str, key: KeyRef, *, managed_by: str = "customer") -> int:
        """Move the tenant to another KEK (e.g. its own CMK): every data key is unwrapped
        under the old KEK and wrapped under the new one; no data is re-encrypted. Returns
        the number of data keys re-wrapped."""
        self._check_region(tenant_id, self.provider(key.provider), key)
        with self.store.transaction(tenant_id) as conn:
            old = self._kek(conn, tenant_id)
            records = self.store.data_keys_of(conn, tenant_id)
            for record in records:
                material = self._unwrap(record)
                wrapped, used = self._wrap(key, tenant_id, record.purpose, record.version,
                                           material)
                self.store.rewrap(conn, record, wrapped, used)
            self.store.put_kek(conn, KekRecord(tenant_id, KeyRef(key.provider, key.key_id),
                                               managed_by, "active"), self._clock.now())
        self._forget(tenant_id)
        self._emit("key.switch", tenant_id, key, previous=f"{old.ref.provider}:{old.ref.key_id}",
                   rewrapped=str(len(records)))
        return len(records)

    def rotate_kek(self, tenant_id: str) -> int:
        """New KEK version, then re-wrap every data key under it: O(number of data keys),
        no data touched. Returns how many were re-wrapped."""
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
            provider = self.provider(kek.ref.provider)
            new = self._call(lambda: provider.rotate(kek.ref))
            records = self.store.data_keys_of(conn, tenant_id)
            for record in records:
                material = self._unwrap(record)
                wrapped, used = self._wrap(kek.ref, tenant_id, record.purpose, record.version,
                                           material)
                self.store.rewrap(conn, record, wrapped, used)
        self._forget(tenant_id)
        self._emit("key.rotate", tenant_id, new, rewrapped=str(len(records)))
        return len(records)

    def rotate_data_key(self, tenant_id: str, purpose: str = DEFAULT_PURPOSE) -> int:
        """A new data-key version for new writes; older versions still decrypt until the
        re-encryption job (:func:`tenancy.keys.reencrypt`) has moved their data."""
        with self.store.transaction(tenant_id) as conn:
            version = self._new_data_key(conn, tenant_id, purpose)
        self._current.pop((tenant_id, purpose), None)
        self._emit("key.rotate_data_key", tenant_id, None, purpose=purpose,
                   dek_version=str(version))
        return version

    def retire_data_key(self, tenant_id: str, purpose: str, version: int) -> None:
        with self.store.transaction(tenant_id) as conn:
            self.store.retire(conn, tenant_id, purpose, version)

    def shred(self, tenant_id: str) -> None:
        """Crypto-shredding: destroy the tenant's KEK in its provider and forget every
        wrapped data key. The tenant's ciphertexts stay where they are, unreadable."""
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
            provider = self.provider(kek.ref.provider)
            if kek.managed_by == "platform":
                self._call(lambda: provider.destroy(kek.ref))
            forgotten = self.store.forget_data_keys(conn, tenant_id)
            self.store.put_kek(conn, KekRecord(tenant_id, kek.ref, kek.managed_by, "destroyed"),
                               self._clock.now())
        self._forget(tenant_id)
        self._emit("key.destroy", tenant_id, kek.ref, data_keys=str(forgotten),
                   managed_by=kek.managed_by)

    def status(self, tenant_id: str) -> KeyStatus:
        with self.store.transaction(tenant_id) as conn:
            kek = self.store.kek(conn, tenant_id)
            records = tuple(self.store.data_keys_of(conn, tenant_id))
        info = None
        if kek is not None and kek.state != "destroyed":
            provider = self.provider(kek.ref.provider)
            try:
                info = self._call(lambda: provider.describe(kek.ref))
            except KeyUnavailable:
                info = None
        return KeyStatus(tenant_id, kek, info, records)

    # -- data ----------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, binding: Binding, *,
                purpose: str = DEFAULT_PURPOSE) -> bytes:
        """Seal ``plaintext`` for ``binding`` under the tenant's current data key.

        Raises:
            KeyUnavailable / KeyDestroyed: the tenant's KEK cannot unwrap the data key.
            TenantContextConflict: a context for another tenant is bound.
            LayerMismatch: consistency mode, and the binding names another tenant.
        """
        consistency.observe(consistency.KEYS, binding.tenant_id)
        self._check_tenant(binding.tenant_id)
        now = self._clock.timestamp()
        key = self._current_key(binding.tenant_id, purpose, now)
        ciphertext = seal(key, plaintext, binding)
        self._count(binding.tenant_id, purpose, key.version)
        return ciphertext

    def decrypt(self, ciphertext: bytes, binding: Binding, *,
                purpose: str = DEFAULT_PURPOSE) -> bytes:
        """Open a ciphertext sealed for ``binding``.

        Raises:
            DecryptionFailed: tampered, truncated, or sealed for another place.
            UnknownKeyVersion: it names a data-key version that does not exist.
            KeyUnavailable / KeyDestroyed: the tenant's KEK cannot unwrap the data key.
            LayerMismatch: consistency mode, and the binding names another tenant.
        """
        consistency.observe(consistency.KEYS, binding.tenant_id)
        self._check_tenant(binding.tenant_id)
        version = header_version(ciphertext)
        key = self._key(binding.tenant_id, purpose, version, self._clock.timestamp())
        return open_(key, ciphertext, binding)

    # -- internals -------------------------------------------------------------------

    def _current_key(self, tenant_id: str, purpose: str, now: float) -> DataKey:
        # The current version is remembered as long as its unwrapped key may be cached, so a
        # warm encrypt touches neither the database nor the provider.
        slot = (tenant_id, purpose)
        remembered = self._current.get(slot)
        if remembered is not None:
            record, until, sent_at_load, retire_at = remembered
            if now < until and now < retire_at:
                sent = self._sent.get((tenant_id, purpose, record.version), 0) - sent_at_load
                if record.messages + sent < self._max_messages:
                    cached = self.cache.get((tenant_id, purpose, record.version), now)
                    if cached is not None:
                        return cached
        found = self._current_record(tenant_id, purpose, now)
        key = self._key(tenant_id, purpose, found.version, now, record=found)
        counted = (tenant_id, purpose, found.version)
        # The stored count already includes what was flushed; what is not yet flushed is
        # added back through the difference.
        self._current[slot] = (found, now + self.cache.ttl,
                               self._sent.get(counted, 0) - self._unflushed.get(counted, 0),
                               (as_utc(found.created_at) + self._max_age).timestamp())
        return key

    def _current_record(self, tenant_id: str, purpose: str, now: float) -> DataKeyRecord:
        """The data key to encrypt with, created (or rotated) if needed. Two writers may
        create the same version at once (threads, processes): the loser's INSERT fails on
        the key, its transaction rolls back, and it takes the winner's key instead."""
        for attempt in range(_CREATE_RACES):
            try:
                with self.store.transaction(tenant_id) as conn:
                    found = self.store.data_key(conn, tenant_id, purpose)
                    unflushed = 0 if found is None else self._unflushed.get(
                        (tenant_id, purpose, found.version), 0)
                    if found is None or self._worn(found, unflushed):
                        version = self._new_data_key(conn, tenant_id, purpose, now)
                        found = self.store.data_key(conn, tenant_id, purpose, version)
                        assert found is not None
                    return found
            except IntegrityError:
                if attempt == _CREATE_RACES - 1:
                    raise
        raise AssertionError("unreachable")

    def _worn(self, record: DataKeyRecord, unflushed: int) -> bool:
        return (self._clock.now() - as_utc(record.created_at) >= self._max_age
                or record.messages + unflushed >= self._max_messages)

    def _key(self, tenant_id: str, purpose: str, version: int, now: float, *,
             record: DataKeyRecord | None = None) -> DataKey:
        cached = self.cache.get((tenant_id, purpose, version), now)
        if cached is not None:
            return cached
        if record is None:
            with self.store.transaction(tenant_id) as conn:
                self._kek(conn, tenant_id)  # a shredded tenant is KeyDestroyed, not "unknown"
                record = self.store.data_key(conn, tenant_id, purpose, version)
            if record is None:
                raise UnknownKeyVersion("no such data-key version")
        key = DataKey.from_material(self._unwrap(record), version)
        self.cache.put((tenant_id, purpose, version), key, now)
        return key

    def _new_data_key(self, conn: Connection, tenant_id: str, purpose: str,
                      now: float | None = None) -> int:
        kek = self._kek(conn, tenant_id)
        version = self.store.next_version(conn, tenant_id, purpose)
        material = os.urandom(DEK_BYTES)
        wrapped, used = self._wrap(kek.ref, tenant_id, purpose, version, material)
        self.store.add_data_key(conn, DataKeyRecord(tenant_id, purpose, version, wrapped, used,
                                                    "active", 0, self._clock.now()))
        # The new key is in hand: cache it rather than ask the provider to unwrap it again.
        self.cache.put((tenant_id, purpose, version), DataKey.from_material(material, version),
                       self._clock.timestamp() if now is None else now)
        return version

    def _kek(self, conn: Connection, tenant_id: str) -> KekRecord:
        kek = self.store.kek(conn, tenant_id)
        if kek is None:
            raise KeyUnavailable("the tenant has no key")
        if kek.state == "destroyed":
            raise KeyDestroyed("the tenant's keys were destroyed")
        return kek

    def _wrap(self, kek: KeyRef, tenant_id: str, purpose: str, version: int,
              material: bytes) -> tuple[bytes, KeyRef]:
        provider = self.provider(kek.provider)
        context = _wrap_context(tenant_id, purpose, version)
        result = self._call(lambda: provider.wrap(kek, material, context=context))
        self._emit("key.wrap", tenant_id, result[1], purpose=purpose, dek_version=str(version))
        return result

    def _unwrap(self, record: DataKeyRecord) -> bytes:
        provider = self.provider(record.kek.provider)
        context = _wrap_context(record.tenant_id, record.purpose, record.version)
        material = self._call(lambda: provider.unwrap(record.kek, record.wrapped,
                                                      context=context))
        self._emit("key.unwrap", record.tenant_id, record.kek, purpose=record.purpose,
                   dek_version=str(record.version))
        return material

    def _call(self, operation: Callable[[], T]) -> T:
        for attempt in range(self._retries + 1):
            try:
                return operation()
            except ProviderUnavailable:
                if attempt == self._retries:
                    break
                self._sleep(self._backoff * 2**attempt)
        raise KeyUnavailable("the key service is unavailable")

    def provider(self, name: str) -> KeyProvider:
        """The configured provider called ``name``; ``KeyUnavailable`` if there is none."""
        provider = self._providers.get(name)
        if provider is None:
            raise KeyUnavailable(f"no key provider {name!r} is configured here")
        return provider

    def _count(self, tenant_id: str, purpose: str, version: int) -> None:
        key = (tenant_id, purpose, version)
        with self._count_lock:
            self._sent[key] = self._sent.get(key, 0) + 1
            unflushed = self._unflushed.get(key, 0) + 1
            flush = unflushed >= COUNT_FLUSH_EVERY
            self._unflushed[key] = 0 if flush else unflushed
        if flush:
            with self.store.transaction(tenant_id) as conn:
                self.store.count_messages(conn, tenant_id, purpose, version, unflushed)

    def _forget(self, tenant_id: str) -> None:
        self.cache.forget(tenant_id)
        for slot in [s for s in self._current if s[0] == tenant_id]:
            self._current.pop(slot, None)

    def _check_tenant(self, tenant_id: str) -> None:
        ctx = current_or_none()
        if ctx is not None and ctx.tenant_id != tenant_id:
            raise TenantContextConflict("data of another tenant than the bound one")

    def _check_region(self, tenant_id: str, provider: KeyProvider, key: KeyRef) -> None:
        """With ``residency``: refuse a KEK outside the tenant's home region, before it
        is recorded or anything is wrapped under it (``ResidencyViolation``)."""
        residency = self._residency
        if residency is not None:
            self._call(lambda: residency.check_ref(tenant_id, provider, key))

    def _emit(self, action: str, tenant_id: str, key: KeyRef | None, **details: str) -> None:
        ctx = current_or_none()
        info: dict[str, str] = dict(details)
        if key is not None:
            info.update(provider=key.provider, key_id=key.key_id)
            if key.version is not None:
                info["key_version"] = key.version
        if ctx is not None and ctx.support_grant_id is not None:
            info["support_grant_id"] = ctx.support_grant_id
        self._events.emit(SecurityEvent(
            action=action, at=self._clock.now(), tenant_id=tenant_id,
            actor=None if ctx is None else ctx.principal.subject,
            request_id=None if ctx is None else ctx.request_id, details=info))


def _wrap_context(tenant_id: str, purpose: str, version: int) -> Mapping[str, str]:
    """What binds a wrapped data key: its tenant, purpose and version (KMS encryption
    context, or associated data for the local and PKCS#11 providers)."""
    return {"tenancy": "dek/v1", "tenant_id": tenant_id, "purpose": purpose,
            "dek_version": str(version)}

