"""Declarative retention rules: which rows of a data class are due, and when.

A rule names a data class, its table, the timestamp column the clock runs from and how
long rows are kept. A row is due once ``timestamp <= now - keep`` (so with ``keep`` of 12
days, a row is kept on day 11 and deleted on day 12); a NULL timestamp is never due.

The defaults mirror a migration platform's: exported data is deleted 12 days after the
export, identity mappings 14 days after the first notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Table

from tenancy.errors import ConfigurationError
from tenancy.exports.model import ExportRecord
from tenancy.retention.model import IdentityMapping

EXPORTS_KEEP = timedelta(days=12)
MAPPINGS_KEEP = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Delete rows of ``table`` once ``timestamp_column`` is ``keep`` old.

    The table must be tenant-owned (``tenant_id`` first in its primary key).
    """

    data_class: str
    table: Table
    timestamp_column: str
    keep: timedelta

    def __post_init__(self) -> None:
        if not self.data_class.strip():
            raise ConfigurationError("a retention rule needs a data class name")
        if self.keep <= timedelta(0):
            raise ConfigurationError("a retention period must be positive")
        if "tenant_id" not in self.table.c or self.timestamp_column not in self.table.c:
            raise ConfigurationError(
                f"{self.table.name} needs tenant_id and {self.timestamp_column}"
            )
        keys = [c.name for c in self.table.primary_key.columns]
        if not keys or keys[0] != "tenant_id":
            raise ConfigurationError(f"{self.table.name}: tenant_id must lead the primary key")

    @property
    def timestamp(self) -> Column[datetime]:
        """The column whose value decides when a row is due (see ``cutoff``)."""
        column: Column[datetime] = self.table.c[self.timestamp_column]
        return column

    @property
    def row_key(self) -> tuple[Column[object], ...]:
        """The primary key without ``tenant_id``: identifies a row within its tenant."""
        return tuple(c for c in self.table.primary_key.columns if c.name != "tenant_id")

    def cutoff(self, now: datetime) -> datetime:
        """Rows whose timestamp is at or before this moment are due."""
        return now - self.keep


def _table(model: type[object]) -> Table:
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table):
        raise TypeError(f"{model!r} is not a mapped table")
    return table


EXPORTS_RULE = RetentionRule("exports", _table(ExportRecord), "created_at", EXPORTS_KEEP)
MAPPINGS_RULE = RetentionRule(
    "mappings", _table(IdentityMapping), "first_notified_at", MAPPINGS_KEEP
)
DEFAULT_RULES: tuple[RetentionRule, ...] = (EXPORTS_RULE, MAPPINGS_RULE)
