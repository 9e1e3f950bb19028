"""Claims to principal: identity key, assurance, scopes; and the verified-token cache."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt
import pytest

from tenancy.clock import FrozenClock
from tenancy.context import Assurance
from tenancy.errors import InvalidToken
from tenancy.identity import DEV_ISSUER, DevIssuer, TokenVerifier
from tenancy.identity.claims import assurance_from


@pytest.fixture
def leeway() -> float:
    return 0.0  # these tests are about exp itself


def test_same_subject_in_two_tenants_is_two_principals(
    verifier: TokenVerifier, dev: DevIssuer
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    pa = verifier.verify(dev.mint(tenant_id=a, subject="sam", audience="worklogs")).principal
    pb = verifier.verify(dev.mint(tenant_id=b, subject="sam", audience="worklogs")).principal
    assert pa.subject == pb.subject
    assert pa.key != pb.key
    assert pa.key == (DEV_ISSUER, a, "sam")


@pytest.mark.parametrize(
    ("amr", "expected"),
    [
        (None, Assurance.SINGLE_FACTOR),
        (["pwd"], Assurance.SINGLE_FACTOR),
        (["pwd", "otp"], Assurance.SINGLE_FACTOR),  # no "mfa" claim: not asserted as MFA
        (["pwd", "otp", "mfa"], Assurance.MULTI_FACTOR),
        (["hwk", "pin", "mfa"], Assurance.PHISHING_RESISTANT),
    ],
)
def test_mfa_assurance_comes_from_amr(amr: list[str] | None, expected: Assurance) -> None:
    assert assurance_from(amr) is expected


def test_amr_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(InvalidToken):
        assurance_from("mfa")


def test_scopes_and_roles_reach_the_principal(verifier: TokenVerifier, dev: DevIssuer) -> None:
    token = dev.mint(
        tenant_id=str(uuid.uuid4()),
        subject="a",
        audience="worklogs",
        scopes=["worklogs:read"],
        roles=["member"],
        mfa=True,
    )
    principal = verifier.verify(token).principal
    assert principal.scopes == {"worklogs:read"}
    assert principal.roles == {"member"}
    assert principal.mfa


def test_hot_token_is_served_from_the_cache(
    verifier: TokenVerifier, dev: DevIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = dev.mint(tenant_id=str(uuid.uuid4()), subject="a", audience="worklogs")
    first = verifier.verify(token)
    calls = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    for _ in range(5):
        assert verifier.verify(token) is first
    assert calls == []


def test_cache_never_serves_a_token_past_its_exp(
    verifier: TokenVerifier, dev: DevIssuer, clock: FrozenClock
) -> None:
    token = dev.mint(tenant_id=str(uuid.uuid4()), subject="a", audience="worklogs", ttl=60)
    verifier.verify(token)
    clock.advance(59)
    verifier.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_cache_is_bounded() -> None:
    from tenancy.identity import VerifiedTokenCache

    cache: VerifiedTokenCache[int] = VerifiedTokenCache(max_entries=3)
    for i in range(5):
        cache.put(VerifiedTokenCache.digest(f"t{i}"), i, expires_at=100)
    assert len(cache) == 3
    assert cache.get(VerifiedTokenCache.digest("t0"), 0) is None
    assert cache.get(VerifiedTokenCache.digest("t4"), 0) == 4


def test_dev_issuer_key_file_is_private(tmp_path: Path) -> None:
    DevIssuer.load_or_create(tmp_path / "d")
    mode = (tmp_path / "d" / "dev-issuer-ed25519.pem").stat().st_mode & 0o777
    assert mode == 0o600
    assert "PRIVATE" not in repr(DevIssuer.load_or_create(tmp_path / "d"))
