"""Injected time (invariant 6): components read a ``Clock`` so tests can freeze it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tenancy.errors import ConfigurationError


class Clock(Protocol):
    """A source of the current time, always timezone-aware UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""

    def timestamp(self) -> float:
        """Seconds since the epoch; the hot path's cheaper reading of ``now()``."""


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """The wall-clock time now, in UTC."""
        return datetime.now(UTC)

    def timestamp(self) -> float:
        """``time.time()``: seconds since the epoch."""
        return time.time()


class FrozenClock:
    """A clock that only moves when told to; for tests and deterministic tools."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ConfigurationError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The frozen time (moved only by ``advance``)."""
        with self._lock:
            return self._at

    def timestamp(self) -> float:
        """The frozen time as seconds since the epoch."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        """Move time forward (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._at += timedelta(seconds=seconds)
            return self._at


SYSTEM_CLOCK = SystemClock()


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime (SQLite hands them back for timezone-aware
    columns) is taken to be UTC, which is how everything here is stored."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
