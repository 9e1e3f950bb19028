"""A deliberately broken grant check that ignores expiry (a test fixture): a grant ends
only when revoked, never at approval + duration or 24 h after its ticket closed. Patched
into ``Grant.expires_at``, so the middleware, the policy's grant facts and the backend's
re-check all believe an expired grant is active, as they would with the bug in the model.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tenancy.support.model import Grant, GrantState

FOREVER = timedelta(days=3650)


def _expires_at(self: Grant) -> datetime | None:
    if self.state not in (GrantState.APPROVED, GrantState.REVOKED) or self.decided_at is None:
        return None
    return self.revoked_at or self.decided_at + FOREVER


def ignore_grant_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Grant, "expires_at", _expires_at)
