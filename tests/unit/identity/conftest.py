"""Identity tests run at a fixed instant with a dev issuer whose JWKS is a file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenancy.clock import FrozenClock
from tenancy.identity import DEV_ISSUER, DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
AUD = "worklogs"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def leeway() -> float:
    return 30.0


@pytest.fixture
def dev(tmp_path: Path, clock: FrozenClock) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path, clock=clock)


@pytest.fixture
def verifier(dev: DevIssuer, tmp_path: Path, clock: FrozenClock, leeway: float) -> TokenVerifier:
    keys = JWKSKeySource.from_file(tmp_path / "dev-issuer-jwks.json", algorithms=["EdDSA"])
    return TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience=AUD, keys=keys, algorithms=["EdDSA"])],
        clock=clock,
        leeway=leeway,
    )
