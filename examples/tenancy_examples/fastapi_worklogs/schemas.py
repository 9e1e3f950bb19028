"""Demonstrates request and response bodies: what a client may send, and what it sees.

A new worklog's body names no tenant and no author (``extra="forbid"``: a ``tenant_id``
in the body is a 422, never a way to pick a tenant); both come from the verified context.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE = {
    "description": "Reviewed the quarterly plan",
    "minutes": 45,
    "day": "2026-11-21",
    "comment": "see the minutes",
}


class NewWorklog(BaseModel):
    """``POST /worklogs``: the fields a client chooses."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=500)
    minutes: int = Field(ge=1, le=1440)
    day: date
    comment: str | None = Field(default=None, max_length=2000)


class WorklogOut(BaseModel):
    """A worklog as the API shows it (``comment`` decrypted for its own tenant)."""

    id: str
    tenant_id: str
    author: str
    description: str
    minutes: int
    day: date
    comment: str | None
    created_at: datetime


class WorklogPage(BaseModel):
    """One page, newest first; ``next`` is the link to the following page, or null."""

    items: list[WorklogOut]
    next: str | None


class WhoAmI(BaseModel):
    """Who the middleware says is calling."""

    tenant: str
    tenant_id: str
    subject: str
    scopes: list[str]
