"""A tenant's keys over their life: provision, switch to the customer's key, rotate,
retire replaced versions, change the cache TTL, suspend, shred.

A rotation or switch commits its re-wrapped data keys first and destroys replaced KEK
versions only once nothing stored refers to them. A shred is the one change that goes the
other way: it destroys the KEK inside its transaction, before the commit, so the database
never says "destroyed" while the key still exists (should the commit then fail, the data
is unreadable and the record still says active: the next shred finishes the job). Every
change ends with :meth:`_changed`, which tells every process (``state.py``) so that none
uses what it cached about the tenant after the change returns. :class:`TenantKeys` mixes
this in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from tenancy.clock import Clock, as_utc
from tenancy.errors import ConfigurationError
from tenancy.keys.layers import KeyLayers
from tenancy.keys.provider import KeyInfo, KeyProvider, KeyRef
from tenancy.keys.state import KeyStateSignal
from tenancy.keys.store import DataKeyRecord, DataKeyStore, KekRecord

if TYPE_CHECKING:
    from tenancy.residency.keys import KeyResidency

DEFAULT_PURPOSE = "default"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What ``tenancy keys status`` shows: the keys and every data key, no material."""

    tenant_id: str
    kek: KekRecord | None
    kek_info: KeyInfo | None
    data_keys: tuple[DataKeyRecord, ...]
    cmk_info: KeyInfo | None = None


class KeyLifecycle(ABC):
    """The key-management half of :class:`~tenancy.keys.TenantKeys`."""

    store: DataKeyStore
    state: KeyStateSignal
    _layers: KeyLayers
    _default: str
    kek_grace: timedelta
    _clock: Clock
    _residency: KeyResidency | None

    # What the data half (``TenantKeys``) provides to the lifecycle.

    @abstractmethod
    def _kek(self, conn: Connection, tenant_id: str) -> KekRecord:
        """The tenant's live key record (``KeyUnavailable``/``KeyDestroyed`` otherwise)."""

    @abstractmethod
    def _changed(self, tenant_id: str) -> None:
        """Drop this process's cached keys of the tenant and tell every other process."""

    @abstractmethod
    def _new_data_key(self, conn: Connection, tenant_id: str, purpose: str) -> int:
        """Create the next data-key version for ``purpose``; returns it."""

    @abstractmethod
    def _forget_current(self, tenant_id: str, purpose: str) -> None:
        """Forget which data key this process encrypts with for ``purpose``."""

    def provision(
        self,
        tenant_id: str,
        *,
        provider: str | None = None,
        key: KeyRef | None = None,
        cache_ttl: float | None = None,
    ) -> KekRecord:
        """Give a tenant its platform KEK (in ``provider``, default the platform's), and
        with ``key`` put the customer's key on top of it. Idempotent for a tenant that
        already has keys; ``key`` for such a tenant switches it (:meth:`use_provider`)."""
        with self.store.transaction(tenant_id) as conn:
            existing = self.store.kek(conn, tenant_id)
        if existing is not None:
            if key is not None:
                self.use_provider(tenant_id, key)
            if cache_ttl is not None:
                self.set_cache_ttl(tenant_id, cache_ttl)
            if key is None and cache_ttl is None:
                return existing
            with self.store.transaction(tenant_id) as conn:
                return self._kek(conn, tenant_id)
        _check_ttl(cache_ttl)
        platform = self._layers.platform(provider or self._default)
        if key is not None:
            self._check_region(tenant_id, self._layers.provider(key.provider), key)
        ref = self._layers.call(lambda: platform.create_key(tenant_id=tenant_id))
        self._check_region(tenant_id, platform, ref)
        record = KekRecord(
            tenant_id,
            KeyRef(ref.provider, ref.key_id),
            "customer" if key is not None else "platform",
            "active",
            None if key is None else KeyRef(key.provider, key.key_id),
            cache_ttl,
        )
        with self.store.transaction(tenant_id) as conn:
            self.store.put_kek(conn, record, self._clock.now())
        self._layers.emit("key.provision", tenant_id, key or ref, managed_by=record.managed_by)
        self._changed(tenant_id)
        return record

    def use_provider(self, tenant_id: str, key: KeyRef, *, managed_by: str = "customer") -> int:
        """Put the tenant under its own key (CMK) ``key``: a new platform KEK version,
        every data key re-wrapped under it and then under ``key`` (no data re-encrypted),
        and every earlier platform KEK version destroyed, so a data key copied before
        the switch opens with nothing. Returns the number of data keys re-wrapped."""
        self._check_region(tenant_id, self._layers.provider(key.provider), key)
        cmk = KeyRef(key.provider, key.key_id)
        with self.store.transaction(tenant_id) as conn:
            old = self._kek(conn, tenant_id)
            platform = self._layers.platform(old.ref.provider)
            self._layers.call(lambda: platform.rotate(old.ref))
            count = self._rewrap_all(conn, old, old.ref, cmk)
            self.store.put_kek(
                conn, replace(old, managed_by=managed_by, cmk=cmk), self._clock.now()
            )
        destroyed = self._destroy_versions(old, self._layers.old_versions(old))
        previous = old.cmk or old.ref
        self._layers.emit(
            "key.switch",
            tenant_id,
            cmk,
            previous=f"{previous.provider}:{previous.key_id}",
            rewrapped=str(count),
            destroyed_versions=destroyed,
        )
        return count

    def rotate_kek(self, tenant_id: str) -> int:
        """New platform KEK version, then re-wrap every data key under it: O(number of
        data keys), no data touched. The replaced versions are destroyed at once, or
        after ``kek_grace``. Returns how many data keys were re-wrapped."""
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
            platform = self._layers.platform(kek.ref.provider)
            new = self._layers.call(lambda: platform.rotate(kek.ref))
            count = self._rewrap_all(conn, kek, kek.ref, kek.cmk)
            if self.kek_grace:
                due = self._clock.now() + self.kek_grace
                old = self._layers.old_versions(kek)
                # A version already retiring keeps its earlier due time.
                retiring = {**dict.fromkeys(old, due), **dict(kek.retiring)}
                self.store.put_kek(
                    conn, replace(kek, retiring=tuple(retiring.items())), self._clock.now()
                )
        destroyed = (
            "" if self.kek_grace else self._destroy_versions(kek, self._layers.old_versions(kek))
        )
        self._layers.emit(
            "key.rotate", tenant_id, new, rewrapped=str(count), destroyed_versions=destroyed
        )
        self._changed(tenant_id)
        if self.kek_grace:
            self.destroy_retired(tenant_id)
        return count

    def destroy_retired(self, tenant_id: str) -> list[str]:
        """Destroy the replaced KEK versions whose grace period is over; returns them."""
        now = self._clock.now()
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
            due = [version for version, at in kek.retiring if as_utc(at) <= now]
            if not due:
                return []
            self._destroy_versions(kek, due)
            kept = tuple((v, at) for v, at in kek.retiring if v not in due)
            self.store.put_kek(conn, replace(kek, retiring=kept), now)
        self._layers.emit("key.destroy_version", tenant_id, kek.ref, versions=",".join(due))
        self._changed(tenant_id)
        return due

    def rotate_data_key(self, tenant_id: str, purpose: str = DEFAULT_PURPOSE) -> int:
        """A new data-key version for new writes; older versions still decrypt until the
        re-encryption job (:func:`tenancy.keys.reencrypt`) has moved their data."""
        with self.store.transaction(tenant_id) as conn:
            version = self._new_data_key(conn, tenant_id, purpose)
        self._forget_current(tenant_id, purpose)
        self._layers.emit(
            "key.rotate_data_key", tenant_id, None, purpose=purpose, dek_version=str(version)
        )
        self._changed(tenant_id)
        return version

    def retire_data_key(self, tenant_id: str, purpose: str, version: int) -> None:
        """Retire one data key version: it stops encrypting (the next encryption for
        ``purpose`` uses or creates another active version) and keeps decrypting what it
        sealed. Every process drops its cached keys of the tenant. A version that does not
        exist is ignored."""
        with self.store.transaction(tenant_id) as conn:
            self.store.retire(conn, tenant_id, purpose, version)
        self._changed(tenant_id)

    def set_cache_ttl(self, tenant_id: str, seconds: float | None) -> None:
        """How long this tenant's unwrapped data keys may be cached (None: the cache's
        default): the bound on how long a revocation inside the customer's own KMS,
        which the platform cannot observe, still reads."""
        _check_ttl(seconds)
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
            self.store.put_kek(conn, replace(kek, cache_ttl=seconds), self._clock.now())
        self._layers.emit(
            "key.cache_ttl",
            tenant_id,
            None,
            cache_ttl="default" if seconds is None else f"{seconds:g}",
        )
        self._changed(tenant_id)

    def disable_kek(self, tenant_id: str) -> None:
        """Platform-side: suspend the tenant's platform KEK (reversible); every process
        refuses the tenant's encrypted data from its next use."""
        self._set_enabled(tenant_id, False)

    def enable_kek(self, tenant_id: str) -> None:
        """Platform-side: re-enable the tenant's platform KEK after ``disable_kek``; every
        process re-reads the key state on its next use.

        Raises:
            KeyUnavailable: the tenant has no key.
            KeyDestroyed: the tenant's keys were shredded (that is not reversible).
        """
        self._set_enabled(tenant_id, True)

    def shred(self, tenant_id: str) -> None:
        """Crypto-shredding: destroy the tenant's platform KEK (every version) and forget
        every wrapped data key. For a CMK tenant too: the platform destroys the layer it
        holds, so copies of the wrapped data keys open with nothing, whatever the
        customer's key does. Every process refuses the tenant's data from its next use."""
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
            platform = self._layers.provider(kek.ref.provider)
            self._layers.call(lambda: platform.destroy(kek.ref))
            forgotten = self.store.forget_data_keys(conn, tenant_id)
            self.store.put_kek(
                conn, replace(kek, state="destroyed", retiring=()), self._clock.now()
            )
        self._layers.emit(
            "key.destroy", tenant_id, kek.ref, data_keys=str(forgotten), managed_by=kek.managed_by
        )
        self._changed(tenant_id)

    def status(self, tenant_id: str) -> KeyStatus:
        """The tenant's key records and every data key version (wrapped, never in the
        clear), with what the providers say about the platform KEK (unless shredded) and
        the customer's key; an unavailable provider leaves its part None. A tenant without
        keys gets a status with ``kek=None``."""
        with self.store.transaction(tenant_id) as conn:
            kek = self.store.kek(conn, tenant_id)
            records = tuple(self.store.data_keys_of(conn, tenant_id))
        info = cmk_info = None
        if kek is not None and kek.state != "destroyed":
            info = self._layers.describe(kek.ref)
        if kek is not None and kek.cmk is not None:
            cmk_info = self._layers.describe(kek.cmk)
        return KeyStatus(tenant_id, kek, info, records, cmk_info)

    def _destroy_versions(self, kek: KekRecord, versions: list[str]) -> str:
        """Destroy replaced KEK versions, once nothing stored refers to them. The change
        is announced *first*: a process that loaded a data key wrapped under one of them
        just before the re-wrap committed then sees a new generation when its unwrap
        fails, and reads again (``TenantKeys._key``) instead of answering "destroyed"."""
        self._changed(kek.tenant_id)
        done = ",".join(self._layers.destroy_versions(kek, versions))
        self._changed(kek.tenant_id)
        return done

    def _rewrap_all(
        self, conn: Connection, kek: KekRecord, platform_key: KeyRef, cmk: KeyRef | None
    ) -> int:
        """Unwrap every data key of the tenant and wrap it again under the platform KEK's
        current version (and ``cmk`` on top, if any)."""
        records = self.store.data_keys_of(conn, kek.tenant_id)
        for record in records:
            material = self._layers.unwrap(record)
            wrapped, used, cmk_used = self._layers.wrap(
                platform_key, cmk, kek.tenant_id, record.purpose, record.version, material
            )
            self.store.rewrap(conn, record, wrapped, used, cmk_used)
        return len(records)

    def _set_enabled(self, tenant_id: str, enabled: bool) -> None:
        with self.store.transaction(tenant_id) as conn:
            kek = self._kek(conn, tenant_id)
        provider = self._layers.provider(kek.ref.provider)
        change = provider.enable if enabled else provider.disable
        self._layers.call(lambda: change(kek.ref))
        self._layers.emit("key.enable" if enabled else "key.disable", tenant_id, kek.ref)
        self._changed(tenant_id)

    def _check_region(self, tenant_id: str, provider: KeyProvider, key: KeyRef) -> None:
        """With ``residency``: refuse a KEK outside the tenant's home region, before it
        is recorded or anything is wrapped under it (``ResidencyViolation``)."""
        residency = self._residency
        if residency is not None:
            self._layers.call(lambda: residency.check_ref(tenant_id, provider, key))


def _check_ttl(seconds: float | None) -> None:
    if seconds is not None and not 0 < seconds <= 86_400:
        raise ConfigurationError("a data-key cache TTL is between 0 and 86400 seconds")
