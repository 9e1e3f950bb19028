"""The pipeline: records of a tenant that allows contribution -> contributed data."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tenancy.clock import Clock, SystemClock
from tenancy.deid.policy import ContributionPolicy
from tenancy.deid.schema import IdentifierKind, RecordSchema
from tenancy.deid.scrub import Person, Scrubber
from tenancy.errors import ConfigurationError, ContributionRefused, RecordRejected
from tenancy.events import EventSink, LoggingSink, SecurityEvent

PSEUDONYM_PREFIX = "p_"
PSEUDONYM_HEX_CHARS = 16  # 64 bits: collisions are negligible within one tenant
MIN_KEY_BYTES = 16
_DERIVE_LABEL = b"tenancy.deid.pseudonym.v1\x00"
_SCALARS = (str, int, float, bool, type(None))

KeySource = Callable[[str], bytes] | bytes


def _normalise(kind: IdentifierKind, value: str) -> str:
    value = unicodedata.normalize("NFKC", value).strip()
    if kind is IdentifierKind.ACCOUNT:
        return value
    return " ".join(value.casefold().split())


class Deidentifier:
    """Turns a tenant's records into contributed data, only if its setting allows it.

    ``keys`` is either a callable giving each tenant's pseudonym key (say, derived from
    its key hierarchy) or one secret from which a key per tenant is derived with
    HMAC-SHA256. Pseudonyms are ``p_`` + the first 16 hex digits of
    HMAC-SHA256(tenant key, kind + value): stable within a tenant, unrelated across
    tenants, and not reversible without the key.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        policy: ContributionPolicy,
        schema: RecordSchema,
        events: EventSink | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(keys, bytes | bytearray):
            if len(keys) < MIN_KEY_BYTES:
                raise ConfigurationError(f"the pseudonym secret needs {MIN_KEY_BYTES}+ bytes")
            secret = bytes(keys)
            self._key_for: Callable[[str], bytes] = lambda tenant_id: hmac.new(
                secret, _DERIVE_LABEL + tenant_id.encode(), hashlib.sha256
            ).digest()
        elif callable(keys):
            self._key_for = keys
        else:
            raise ConfigurationError("keys must be bytes or a callable tenant_id -> bytes")
        self._policy = policy
        self._schema = schema
        self._events = events or LoggingSink()
        self._clock = clock or SystemClock()

    @property
    def schema(self) -> RecordSchema:
        """The record schema this de-identifier enforces (fixed at construction)."""
        return self._schema

    def deidentify(
        self,
        tenant_id: str,
        records: Iterable[Mapping[str, Any]],
        *,
        people: Iterable[Person] = (),
        actor: str | None = None,
    ) -> list[dict[str, Any]]:
        """De-identified copies of ``records``, or ``ContributionRefused`` (records are then
        not even read). A record that does not match the schema refuses the whole batch
        with ``RecordRejected``. ``people`` is the tenant's directory: their names,
        e-mails and account ids are scrubbed from free text too."""
        try:
            allowed = self._policy.allows(tenant_id) is True
            reason = "contribution-disabled"
        except Exception as exc:
            allowed, reason = False, "policy-unavailable"
            self._refused(tenant_id, actor, reason)
            raise ContributionRefused(tenant_id, reason) from exc
        if not allowed:
            self._refused(tenant_id, actor, reason)
            raise ContributionRefused(tenant_id, reason)

        batch = [dict(record) for record in records]
        try:
            self._validate(batch)
        except RecordRejected as exc:
            self._refused(tenant_id, actor, exc.code, records=len(batch))
            raise
        key = self._key_for(tenant_id)
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(f"the tenant's pseudonym key needs {MIN_KEY_BYTES}+ bytes")

        scrubber = self._scrubber(batch, people)
        out: list[dict[str, Any]] = []
        pseudonymised = dropped = replacements = 0
        for record in batch:
            result: dict[str, Any] = {}
            for name, value in record.items():
                kind = self._schema.identifiers.get(name)
                if kind is not None:
                    if name in self._schema.drop:
                        dropped += 1
                    elif value is None:
                        result[name] = None
                    else:
                        result[name] = pseudonym(key, kind, str(value))
                        pseudonymised += 1
                elif name in self._schema.text:
                    if value is None:
                        result[name] = None
                    else:
                        result[name], count = scrubber.scrub(value)
                        replacements += count
                else:
                    result[name] = value
            out.append(result)
        self._events.emit(
            SecurityEvent(
                action="deid.contributed",
                at=self._clock.now(),
                tenant_id=tenant_id,
                actor=actor,
                details={
                    "records": str(len(out)),
                    "pseudonymised": str(pseudonymised),
                    "dropped": str(dropped),
                    "text_replacements": str(replacements),
                },
            )
        )
        return out

    def _validate(self, batch: list[dict[str, Any]]) -> None:
        schema = self._schema
        for index, record in enumerate(batch):
            for name, value in record.items():
                if name not in schema.fields:
                    raise RecordRejected(
                        f"record {index} has an undeclared field {name!r}", field=name, index=index
                    )
                if name in schema.identifiers:
                    ok = value is None or (
                        isinstance(value, str | int) and not isinstance(value, bool)
                    )
                elif name in schema.text:
                    ok = value is None or isinstance(value, str)
                else:
                    ok = isinstance(value, _SCALARS)
                if not ok:
                    raise RecordRejected(
                        f"record {index}: field {name!r} has a value of type "
                        f"{type(value).__name__}",
                        field=name,
                        index=index,
                    )

    def _scrubber(self, batch: list[dict[str, Any]], people: Iterable[Person]) -> Scrubber:
        names: list[str] = []
        emails: list[str] = []
        accounts: list[str] = []
        by_kind = {
            IdentifierKind.NAME: names,
            IdentifierKind.EMAIL: emails,
            IdentifierKind.ACCOUNT: accounts,
        }
        for record in batch:
            for name, kind in self._schema.identifiers.items():
                value = record.get(name)
                if value is not None:
                    by_kind[kind].append(str(value))
        for person in people:
            if person.name:
                names.append(person.name)
            names.extend(person.aliases)
            if person.email:
                emails.append(person.email)
            if person.account_id:
                accounts.append(person.account_id)
        return Scrubber(names=names, emails=emails, accounts=accounts)

    def _refused(
        self, tenant_id: str, actor: str | None, reason: str, records: int | None = None
    ) -> None:
        details = {} if records is None else {"records": str(records)}
        self._events.emit(
            SecurityEvent(
                action="deid.refused",
                at=self._clock.now(),
                tenant_id=tenant_id,
                actor=actor,
                reason=reason,
                details=details,
            )
        )


def pseudonym(key: bytes, kind: IdentifierKind, value: str) -> str:
    """``p_`` + 16 hex digits of HMAC-SHA256(key, kind NUL normalised value)."""
    message = f"{kind.value}\x00{_normalise(kind, value)}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]
