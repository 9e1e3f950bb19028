"""The declared field schema of the records a ``Deidentifier`` accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from tenancy.errors import InvalidSchema


class IdentifierKind(StrEnum):
    """What a direct-identifier field holds; decides normalisation and, for names, which
    parts are looked for in free text."""

    NAME = "name"
    EMAIL = "email"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class RecordSchema:
    """Which fields of a record are what. Every field a record carries must be declared.

    - ``identifiers``: direct identifiers, field name -> kind. Pseudonymised (tenant-keyed
      ``p_...``) unless also listed in ``drop``, where they are removed. Their values are
      also searched for, and replaced, in every free-text field of the batch.
    - ``drop``: identifiers removed from the output entirely.
    - ``text``: free text, scrubbed of e-mail addresses, phone numbers, @handles and every
      known name, e-mail and account id.
    - ``keep``: non-identifying scalars passed through unchanged (the declarer vouches for
      them: they are not scanned).
    """

    identifiers: Mapping[str, IdentifierKind]
    text: frozenset[str] = frozenset()
    keep: frozenset[str] = frozenset()
    drop: frozenset[str] = frozenset()
    _fields: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        identifiers = dict(self.identifiers)
        for name, kind in identifiers.items():
            if not isinstance(kind, IdentifierKind):
                raise InvalidSchema(
                    f"identifier field {name!r} needs an IdentifierKind", field=name
                )
        object.__setattr__(self, "identifiers", identifiers)
        for attr in ("text", "keep", "drop"):
            value = getattr(self, attr)
            if isinstance(value, str):
                raise InvalidSchema(f"{attr} must be a set of field names, not a string")
            object.__setattr__(self, attr, frozenset(value))
        groups = {"identifiers": frozenset(identifiers), "text": self.text, "keep": self.keep}
        seen: dict[str, str] = {}
        for group, names in groups.items():
            for name in names:
                if not isinstance(name, str) or not name:
                    raise InvalidSchema(f"field names must be non-empty strings: {name!r}")
                if name in seen:
                    raise InvalidSchema(
                        f"field {name!r} is declared both as {seen[name]} and as {group}",
                        field=name,
                    )
                seen[name] = group
        unknown_drops = self.drop - frozenset(identifiers)
        if unknown_drops:
            name = sorted(unknown_drops)[0]
            raise InvalidSchema(f"only identifier fields can be dropped: {name!r}", field=name)
        if not seen:
            raise InvalidSchema("a schema must declare at least one field")
        object.__setattr__(self, "_fields", frozenset(seen))

    @property
    def fields(self) -> frozenset[str]:
        """Every declared field name (identifiers, text and keep); a record holding any
        other field is rejected."""
        return self._fields
