"""The layers that wrap a data key, and the calls that cross into key providers.

A data key is wrapped by the tenant's platform KEK; for a tenant on its own key (CMK),
that wrap is wrapped again by the customer's key, whose layer names itself in the
context (``layer=customer``) so that neither layer's blob passes for the other's.
Opening takes the customer's layer off first, then the platform's: the customer's
revocation stops the first step, the platform's shred the second.

Every provider call goes through :meth:`KeyLayers.call`: transient outages
(``ProviderUnavailable``) are retried with exponential backoff, then reported as
``KeyUnavailable``; never another key, never plaintext. Every wrap and unwrap is a
``key.*`` security event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from tenancy.clock import Clock
from tenancy.context import current_or_none
from tenancy.errors import ConfigurationError, KeyUnavailable
from tenancy.events import EventSink, SecurityEvent
from tenancy.keys.provider import (
    KeyInfo,
    KeyProvider,
    KeyRef,
    PlatformKeyProvider,
    ProviderUnavailable,
)
from tenancy.keys.store import DataKeyRecord, KekRecord
from tenancy.retrying import retrying

T = TypeVar("T")


class KeyLayers:
    """The configured providers, and the two-layer wrap of data keys through them."""

    def __init__(
        self,
        providers: Iterable[KeyProvider],
        *,
        events: EventSink,
        clock: Clock,
        retries: int = 3,
        backoff: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._providers = {p.name: p for p in providers}
        self._events = events
        self._clock = clock
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep

    def provider(self, name: str) -> KeyProvider:
        """The configured provider called ``name``; ``KeyUnavailable`` if there is none."""
        provider = self._providers.get(name)
        if provider is None:
            raise KeyUnavailable(f"no key provider {name!r} is configured here")
        return provider

    def platform(self, name: str) -> PlatformKeyProvider:
        """The provider ``name`` if it can hold platform KEKs."""
        provider = self.provider(name)
        if not isinstance(provider, PlatformKeyProvider):
            raise ConfigurationError(
                f"{provider.name!r} cannot hold platform KEKs "
                "(it cannot destroy a single KEK version)"
            )
        return provider

    def call(self, operation: Callable[[], T]) -> T:
        """``operation()``, retried on ``ProviderUnavailable`` with backoff; a service
        that never answers is ``KeyUnavailable``."""
        try:
            for attempt in retrying(
                on=ProviderUnavailable,
                attempts=self._retries + 1,
                backoff=self._backoff,
                sleep=self._sleep,
            ):
                with attempt:
                    return operation()
        except ProviderUnavailable as exc:
            raise KeyUnavailable("the key service is unavailable") from exc
        raise KeyUnavailable("the key service is unavailable")  # no attempt ran

    def wrap(
        self,
        platform_key: KeyRef,
        cmk: KeyRef | None,
        tenant_id: str,
        purpose: str,
        version: int,
        material: bytes,
    ) -> tuple[bytes, KeyRef, KeyRef | None]:
        """Wrap under the platform KEK, then (CMK tenants) under the customer's key.
        Returns the blob and the exact versions that wrapped it."""
        context = wrap_context(tenant_id, purpose, version)
        platform = self.provider(platform_key.provider)
        wrapped, used = self.call(lambda: platform.wrap(platform_key, material, context=context))
        self.emit("key.wrap", tenant_id, used, purpose=purpose, dek_version=str(version))
        if cmk is None:
            return wrapped, used, None
        customer = self.provider(cmk.provider)
        outer, cmk_used = self.call(lambda: customer.wrap(cmk, wrapped, context=_outer(context)))
        self.emit("key.wrap", tenant_id, cmk_used, purpose=purpose, dek_version=str(version))
        return outer, used, cmk_used

    def unwrap(self, record: DataKeyRecord) -> bytes:
        """Take the customer's layer off (if any), then the platform's."""
        context = wrap_context(record.tenant_id, record.purpose, record.version)
        wrapped = record.wrapped
        cmk = record.cmk
        if cmk is not None:
            customer = self.provider(cmk.provider)
            outer = wrapped
            wrapped = self.call(lambda: customer.unwrap(cmk, outer, context=_outer(context)))
            self.emit(
                "key.unwrap",
                record.tenant_id,
                cmk,
                purpose=record.purpose,
                dek_version=str(record.version),
            )
        platform = self.provider(record.kek.provider)
        inner = wrapped
        material = self.call(lambda: platform.unwrap(record.kek, inner, context=context))
        self.emit(
            "key.unwrap",
            record.tenant_id,
            record.kek,
            purpose=record.purpose,
            dek_version=str(record.version),
        )
        return material

    def describe(self, ref: KeyRef) -> KeyInfo | None:
        """What the provider says of ``ref``, or None if it says nothing (unavailable)."""
        provider = self.provider(ref.provider)
        try:
            return self.call(lambda: provider.describe(ref))
        except KeyUnavailable:
            return None

    def old_versions(self, kek: KekRecord) -> list[str]:
        """The platform KEK's versions other than the current one."""
        provider = self.provider(kek.ref.provider)
        info = self.call(lambda: provider.describe(kek.ref))
        return [v for v in info.versions if v != info.ref.version]

    def destroy_versions(self, kek: KekRecord, versions: Iterable[str]) -> list[str]:
        """Destroy the given platform KEK versions (after the commit that re-wrapped every
        data key away from them); returns them."""
        platform = self.platform(kek.ref.provider)
        done = []
        for version in versions:
            self.call(lambda v=version: platform.destroy_version(kek.ref, v))  # type: ignore[misc]
            done.append(version)
        return done

    def emit(self, action: str, tenant_id: str, key: KeyRef | None, **details: str) -> None:
        """Emit the key-management event ``action`` for ``tenant_id``, naming ``key``
        (provider, id, version) but never key material, with the actor, request id and
        support grant of the bound context, if any."""
        ctx = current_or_none()
        info: dict[str, str] = dict(details)
        if key is not None:
            info.update(provider=key.provider, key_id=key.key_id)
            if key.version is not None:
                info["key_version"] = key.version
        if ctx is not None and ctx.support_grant_id is not None:
            info["support_grant_id"] = ctx.support_grant_id
        self._events.emit(
            SecurityEvent(
                action=action,
                at=self._clock.now(),
                tenant_id=tenant_id,
                actor=None if ctx is None else ctx.principal.subject,
                request_id=None if ctx is None else ctx.request_id,
                details=info,
            )
        )


def wrap_context(tenant_id: str, purpose: str, version: int) -> Mapping[str, str]:
    """What binds a wrapped data key: its tenant, purpose and version (KMS encryption
    context, or associated data for the local and PKCS#11 providers)."""
    return {
        "tenancy": "dek/v1",
        "tenant_id": tenant_id,
        "purpose": purpose,
        "dek_version": str(version),
    }


def _outer(context: Mapping[str, str]) -> Mapping[str, str]:
    """The customer key's layer binds the same data key, and says it is the outer one."""
    return {**context, "layer": "customer"}
