"""Per-tenant envelope encryption: data keys per tenant and purpose under the tenant's KEK.

The key hierarchy, top down::

    root key / HSM ──seals──▶ tenant's platform KEK (versioned; the platform can destroy it)
                                   │ wraps
    customer's key (CMK tenants) ──┤ wraps the platform's wrap again
                                   ▼
                      data key per tenant, purpose and version ──▶ AES-256-GCM fields

A data key is wrapped by the tenant's platform KEK and, for a tenant on its own key
(CMK), that wrap is wrapped again by the customer's key. Opening one needs both layers:
the customer cuts access by revoking its key; the platform makes every copy of every
wrapped data key (WAL, dead tuples, replicas, backups) useless by destroying the KEK it
holds — without the customer's key. A KEK rotation and a switch to the customer's key
re-wrap every data key under a new KEK version and destroy the previous versions (after
``kek_grace`` for a rotation; at once for a switch), so a copy taken before opens with
nothing.

``TenantKeys`` is the one entry point. It provisions, rotates, switches and shreds keys,
creates and rotates data keys (by age and by message count, far below the 2^32
random-nonce limit), unwraps them through the providers (retrying transient outages with
backoff, never falling back to another key or to plaintext), and keeps unwrapped keys in
a cache whose entries die on a key-state change made by *any* process (``state.py``) or
after the tenant's TTL. Every wrap, unwrap, rotation and destruction is a ``key.*`` event
naming tenant, key, purpose, principal and support grant. Steps that wait on I/O call
``may_block()`` first, so an async session runs them off the loop (``blocking.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tenancy import consistency
from tenancy.clock import SYSTEM_CLOCK, Clock, SystemClock, as_utc
from tenancy.context import current_or_none
from tenancy.errors import (
    ConfigurationError,
    KeyDestroyed,
    KeyManagementError,
    KeyUnavailable,
    TenantContextConflict,
    UnknownKeyVersion,
)
from tenancy.events import EventSink, LoggingSink
from tenancy.keys.blocking import may_block
from tenancy.keys.cache import CachedKey, CurrentKey, DataKeyCache, MessageCount
from tenancy.keys.envelope import DEK_BYTES, Binding, DataKey, header_version, open_checked, seal
from tenancy.keys.layers import KeyLayers
from tenancy.keys.lifecycle import DEFAULT_PURPOSE, KeyLifecycle
from tenancy.keys.provider import (
    KeyProvider,
)
from tenancy.keys.state import KeyStateSignal, ProcessKeyState
from tenancy.keys.store import DataKeyRecord, DataKeyStore, KekRecord
from tenancy.retrying import retrying

if TYPE_CHECKING:
    from tenancy.residency.keys import KeyResidency

# Random 96-bit nonces: NIST bounds a key at 2^32 messages; rotate a thousand times sooner.
DEFAULT_MAX_MESSAGES = 2**22
COUNT_FLUSH_EVERY = 1024
_CREATE_RACES = 3  # a lost race to create a data key is retried, reading the winner's


class TenantKeys(KeyLifecycle):
    """Encrypt and decrypt tenant data; manage the tenant's keys.

    Args:
        engine: where wrapped data keys are stored (``tenancy.keys.store``).
        providers: the key providers by name; ``default_provider`` names the one that
            holds the platform KEKs (it must be able to destroy single versions).
        cache: unwrapped data keys (TTL: how long a revoked CMK still reads, unless the
            tenant has its own TTL, ``set_cache_ttl``).
        state: how key-state changes reach the other processes (default: this process
            only; ``SharedKeyState`` for one host, ``RedisKeyState`` for several).
        kek_grace: how long a replaced KEK version survives a rotation (0: destroyed at
            once); due versions are destroyed by ``destroy_retired`` and every rotation.
        dek_max_age: a data key older than this is replaced by a new version.
        dek_max_messages: so is one that sealed this many messages.
        retries: transient provider outages are retried ``retries`` times, waiting
            ``backoff * 2**attempt`` seconds, then ``KeyUnavailable``.
        backoff: the first wait, in seconds (see ``retries``).
    """

    def __init__(
        self,
        engine: Engine,
        providers: Iterable[KeyProvider],
        *,
        default_provider: str = "local",
        cache: DataKeyCache | None = None,
        state: KeyStateSignal | None = None,
        kek_grace: timedelta = timedelta(0),
        dek_max_age: timedelta = timedelta(days=90),
        dek_max_messages: int = DEFAULT_MAX_MESSAGES,
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        retries: int = 3,
        backoff: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        residency: KeyResidency | None = None,
    ) -> None:
        self._residency = residency
        self._events = events if events is not None else LoggingSink()
        self._clock = clock
        self._layers = KeyLayers(
            providers,
            events=self._events,
            clock=clock,
            retries=retries,
            backoff=backoff,
            sleep=sleep,
        )
        self._layers.platform(default_provider)  # a platform provider, or it does not start
        if not 1 <= dek_max_messages <= 2**32 // 1024:
            raise ConfigurationError("dek_max_messages must stay far below 2^32")
        if kek_grace < timedelta(0):
            raise ConfigurationError("kek_grace cannot be negative")
        self.store = DataKeyStore(engine)
        self._default = default_provider
        self.cache = cache if cache is not None else DataKeyCache()
        self.state: KeyStateSignal = state if state is not None else ProcessKeyState()
        self.kek_grace = kek_grace
        self._max_age = dek_max_age
        self._max_messages = dek_max_messages
        self._counters: dict[tuple[str, str, int], MessageCount] = {}  # per data key
        self._current: dict[tuple[str, str], CurrentKey] = {}
        # The system clock's reading without a method call in between (hot path).
        self._timestamp = time.time if type(clock) is SystemClock else clock.timestamp
        self._count_lock = threading.Lock()

    def create_schema(self) -> None:
        """Create the key tables (SQLite and tests; on PostgreSQL the migrations do)."""
        self.store.create_schema()

    def provider(self, name: str) -> KeyProvider:
        """The configured provider called ``name``; ``KeyUnavailable`` if there is none."""
        return self._layers.provider(name)

    def encrypt(
        self, plaintext: bytes, binding: Binding, *, purpose: str = DEFAULT_PURPOSE
    ) -> bytes:
        """Seal ``plaintext`` for ``binding`` under the tenant's current data key.

        Raises:
            KeyUnavailable / KeyDestroyed: the tenant's keys cannot unwrap the data key.
            TenantContextConflict: a context for another tenant is bound.
            LayerMismatch: consistency mode, and the binding names another tenant.
        """
        tenant_id = binding.tenant_id
        consistency.observe(consistency.KEYS, tenant_id)
        ctx = current_or_none()
        if ctx is not None and ctx.tenant_id != tenant_id:
            raise TenantContextConflict("data of another tenant than the bound one")
        now = self._timestamp()
        generation = self.state.generation(tenant_id)  # on every use: see state.py
        current = self._current.get((tenant_id, purpose))
        if current is None or not current.usable(now, generation):
            current = self._current_key(tenant_id, purpose, now, generation)
        key = current.entry.value
        ciphertext = seal(key, plaintext, binding)
        self._count(current.count, tenant_id, purpose, key.version)
        return ciphertext

    def decrypt(
        self, ciphertext: bytes, binding: Binding, *, purpose: str = DEFAULT_PURPOSE
    ) -> bytes:
        """Open a ciphertext sealed for ``binding``.

        Raises:
            DecryptionFailed: tampered, truncated, or sealed for another place.
            UnknownKeyVersion: it names a data-key version that does not exist.
            KeyUnavailable / KeyDestroyed: the tenant's keys cannot unwrap the data key.
            LayerMismatch: consistency mode, and the binding names another tenant.
        """
        tenant_id = binding.tenant_id
        consistency.observe(consistency.KEYS, tenant_id)
        ctx = current_or_none()
        if ctx is not None and ctx.tenant_id != tenant_id:
            raise TenantContextConflict("data of another tenant than the bound one")
        version = header_version(ciphertext)  # length and format; open_checked reads on
        now = self._timestamp()
        generation = self.state.generation(tenant_id)  # on every use: see state.py
        entry = self.cache.lookup((tenant_id, purpose, version))
        if entry is not None and entry.usable(now, generation):
            entry.left -= 1  # one use (approximate under threads, as in the cache)
        else:
            entry = self._key(tenant_id, purpose, version, now, generation=generation)
        return open_checked(entry.value, ciphertext, binding)

    def report_unreadable(self, binding: Binding, *, purpose: str = DEFAULT_PURPOSE) -> None:
        """Record a value that failed its integrity check and was served as unreadable
        (``key.decrypt_failed``; no detail of the ciphertext)."""
        self._layers.emit(
            "key.decrypt_failed",
            binding.tenant_id,
            None,
            purpose=purpose,
            table=binding.table,
            column=binding.column,
            row=binding.row_key,
        )

    def _current_key(self, tenant_id: str, purpose: str, now: float, generation: int) -> CurrentKey:
        may_block()  # a key-store read (and maybe an unwrap) follows
        found, kek = self._current_record(tenant_id, purpose, now, generation)
        entry = self._key(
            tenant_id, purpose, found.version, now, loaded=(found, kek), generation=generation
        )
        counter = self._counter((tenant_id, purpose, found.version))
        ttl = self.cache.ttl if kek.cache_ttl is None else kek.cache_ttl
        retire_at = (as_utc(found.created_at) + self._max_age).timestamp()
        with self._count_lock:
            # The stored count already includes what was flushed; what is not yet flushed
            # is added back: stored + unflushed + sent from now < max messages.
            limit = self._max_messages - found.messages + counter.sent - counter.unflushed
        current = CurrentKey(entry, min(now + ttl, retire_at), generation, counter, limit)
        self._current[(tenant_id, purpose)] = current
        return current

    def _counter(self, slot: tuple[str, str, int]) -> MessageCount:
        return self._counters.get(slot) or self._counters.setdefault(slot, MessageCount())

    def _current_record(
        self, tenant_id: str, purpose: str, now: float, generation: int
    ) -> tuple[DataKeyRecord, KekRecord]:
        """The data key to encrypt with, created (or rotated) if needed. Two writers may
        create the same version at once (threads, processes): the loser's INSERT fails on
        the key, its transaction rolls back, and it takes the winner's key instead."""
        for attempt in retrying(on=IntegrityError, attempts=_CREATE_RACES):
            with attempt, self.store.transaction(tenant_id) as conn:
                kek = self._kek(conn, tenant_id)
                found = self.store.data_key(conn, tenant_id, purpose)
                unflushed = (
                    0
                    if found is None
                    else self._counter((tenant_id, purpose, found.version)).unflushed
                )
                if found is None or self._worn(found, unflushed):
                    version = self._new_data_key(
                        conn, tenant_id, purpose, now, kek=kek, generation=generation
                    )
                    found = self.store.data_key(conn, tenant_id, purpose, version)
                    if found is None:
                        raise KeyUnavailable("the new data key was not stored")
                return found, kek
        raise KeyUnavailable("could not create the tenant's data key")  # no attempt ran

    def _worn(self, record: DataKeyRecord, unflushed: int) -> bool:
        return (
            self._clock.now() - as_utc(record.created_at) >= self._max_age
            or record.messages + unflushed >= self._max_messages
        )

    def _key(
        self,
        tenant_id: str,
        purpose: str,
        version: int,
        now: float,
        *,
        loaded: tuple[DataKeyRecord, KekRecord] | None = None,
        generation: int | None = None,
    ) -> CachedKey:
        """The cache entry of a data key, one use counted; unwrapped and cached on a miss."""
        if generation is None:
            generation = self.state.generation(tenant_id)  # before loading: see state.py
        cached = self.cache.entry((tenant_id, purpose, version), now, generation)
        if cached is not None:
            return cached
        may_block()  # an unwrap at the provider (a KMS or HSM) follows
        for attempt in range(2):
            if loaded is None:
                with self.store.transaction(tenant_id) as conn:
                    kek = self._kek(conn, tenant_id)  # a shredded tenant is KeyDestroyed
                    record = self.store.data_key(conn, tenant_id, purpose, version)
                if record is None:
                    raise UnknownKeyVersion("no such data-key version")
            else:
                record, kek = loaded
            try:
                material = self._layers.unwrap(record)
                break
            except KeyUnavailable:
                # Another process may have committed a rotation or switch after our load
                # and destroyed the KEK version we loaded: it bumps the generation before
                # destroying anything, so a changed generation means "read again" (once).
                fresh = self.state.generation(tenant_id)
                if attempt or fresh == generation:
                    raise
                generation, loaded = fresh, None
        key = DataKey.from_material(material, version)
        entry = self.cache.put(
            (tenant_id, purpose, version), key, now, generation=generation, ttl=kek.cache_ttl
        )
        entry.left -= 1  # this use
        return entry

    def _new_data_key(
        self,
        conn: Connection,
        tenant_id: str,
        purpose: str,
        now: float | None = None,
        *,
        kek: KekRecord | None = None,
        generation: int | None = None,
    ) -> int:
        kek = kek or self._kek(conn, tenant_id)
        version = self.store.next_version(conn, tenant_id, purpose)
        material = os.urandom(DEK_BYTES)
        wrapped, used, cmk_used = self._layers.wrap(
            kek.ref, kek.cmk, tenant_id, purpose, version, material
        )
        self.store.add_data_key(
            conn,
            DataKeyRecord(
                tenant_id, purpose, version, wrapped, used, "active", 0, self._clock.now(), cmk_used
            ),
        )
        # The new key is in hand: cache it rather than ask the provider to unwrap it again.
        if generation is not None:
            self.cache.put(
                (tenant_id, purpose, version),
                DataKey.from_material(material, version),
                self._clock.timestamp() if now is None else now,
                generation=generation,
                ttl=kek.cache_ttl,
            )
        return version

    def _kek(self, conn: Connection, tenant_id: str) -> KekRecord:
        kek = self.store.kek(conn, tenant_id)
        if kek is None:
            raise KeyUnavailable("the tenant has no key")
        if kek.state == "destroyed":
            raise KeyDestroyed("the tenant's keys were destroyed")
        return kek

    def _count(self, counter: MessageCount, tenant_id: str, purpose: str, version: int) -> None:
        lock = self._count_lock
        lock.acquire()  # (cheaper than ``with`` on this path)
        try:
            unflushed = counter.unflushed + 1
            flush = unflushed >= COUNT_FLUSH_EVERY
            if flush:
                may_block()  # before counting: the operation runs again off the loop
            counter.sent += 1
            counter.unflushed = 0 if flush else unflushed
        finally:
            lock.release()
        if flush:
            with self.store.transaction(tenant_id) as conn:
                self.store.count_messages(conn, tenant_id, purpose, version, unflushed)

    def _forget_current(self, tenant_id: str, purpose: str) -> None:
        self._current.pop((tenant_id, purpose), None)

    def _changed(self, tenant_id: str) -> None:
        """A key-state change: drop this process's cached keys and tell every other
        process (their next use re-reads the database and the providers)."""
        self.cache.forget(tenant_id)
        for slot in [s for s in self._current if s[0] == tenant_id]:
            self._current.pop(slot, None)
        try:
            self.state.changed(tenant_id)
        except Exception as exc:
            # The change itself is committed (and its event emitted); only the news did
            # not go out. Say so, and how to send it again.
            raise KeyManagementError(
                "the key change is committed but other processes were not told; run "
                "`tenancy keys announce` for this tenant once the key-state signal "
                "works"
            ) from exc

    def announce(self, tenant_id: str) -> None:
        """Tell every process again that the tenant's keys changed (after a change whose
        announcement failed: ``KeyManagementError`` said so)."""
        self._changed(tenant_id)
