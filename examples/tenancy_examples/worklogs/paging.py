"""Demonstrates cursor pagination: ``GET /worklogs?limit=N&cursor=C``, newest first.

A cursor is the position after the last row of a page (its day, creation time and id),
base64url-encoded JSON. It is a position, not a credential: the tenant scoping decides
which rows exist at all, so a cursor made up by a client can only skip within its own
tenant's rows. A cursor that does not decode is refused (422 naming ``cursor``), never
treated as "from the start".
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime

from tenancy.errors import InvalidRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the last row's sort key (day, created at, id), newest first."""

    day: date
    created_at: datetime
    id: str

    def encode(self) -> str:
        """The opaque cursor a client sends back for the next page."""
        raw = json.dumps([self.day.isoformat(), self.created_at.isoformat(), self.id])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_limit(value: str | None) -> int:
    """The page size: 1 to ``MAX_LIMIT``, default ``DEFAULT_LIMIT``."""
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(
            "the page size is invalid", errors={"limit": f"must be 1 to {MAX_LIMIT}"}
        )
    return int(value)


def parse_cursor(value: str | None) -> Position | None:
    """The position a ``cursor`` names, or None for the first page."""
    if value is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        day, created_at, row_id = json.loads(raw)
        return Position(date.fromisoformat(day), datetime.fromisoformat(created_at), str(row_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidRequest(
            "the cursor is invalid", errors={"cursor": "not a cursor this API returned"}
        ) from exc
