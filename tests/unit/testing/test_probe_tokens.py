"""The probe's tokens: obtained from every kind of source, and tampered with PyJWT."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jwt
import pytest

from tenancy.identity import DevIssuer
from tenancy.identity.dev import KEY_FILE
from tenancy.testing.probe import ProbeConfigError, TokenSource
from tenancy.testing.probe.config import Issuer
from tenancy.testing.probe.tokens import (
    WRONG_AUDIENCE,
    Resigner,
    alg_none,
    claims,
    forged_signature,
    header,
    obtain,
)


@pytest.fixture
def dev(tmp_path: Path) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path / "issuer")


@pytest.fixture
def token(dev: DevIssuer) -> str:
    return dev.mint(tenant_id="t-acme", subject="alice", audience="edge", scopes=["r"])


def verify(dev: DevIssuer, token: str, audience: str = "edge") -> dict[str, object]:
    key = jwt.PyJWK(dev.public_jwk).key
    decoded: dict[str, object] = jwt.decode(token, key, algorithms=["EdDSA"], audience=audience)
    return decoded


def test_every_source_yields_the_token(tmp_path: Path, token: str, dev: DevIssuer) -> None:
    (tmp_path / "t.jwt").write_text(token + "\n")
    assert obtain(TokenSource(value=token), name="v") == token
    assert obtain(TokenSource(file=tmp_path / "t.jwt"), name="f") == token
    assert (
        obtain(TokenSource(command=(sys.executable, "-c", f"print({token!r})")), name="c") == token
    )
    minted = obtain(
        TokenSource(
            dev_issuer={
                "data_dir": str(tmp_path / "issuer"),
                "tenant_id": "t-acme",
                "sub": "bob",
                "audience": "edge",
                "scopes": ["r"],
            }
        ),
        name="d",
    )
    assert verify(dev, minted)["sub"] == "bob"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (TokenSource(value="not-a-jwt"), "did not yield a JWT"),
        (TokenSource(file=Path("/nonexistent/t.jwt")), "cannot read token file"),
        (
            TokenSource(
                command=(
                    sys.executable,
                    "-c",
                    "import sys; print('boom', file=sys.stderr); sys.exit(3)",
                )
            ),
            "exited 3: boom",
        ),
        (TokenSource(command=("/nonexistent/tool",)), "token command failed"),
        (TokenSource(dev_issuer={"data_dir": "/nonexistent"}), "no dev issuer key"),
    ],
)
def test_a_source_that_fails_names_the_identity(source: TokenSource, message: str) -> None:
    with pytest.raises(ProbeConfigError, match=f"alice: .*{message}"):
        obtain(source, name="alice")


def test_alg_none_keeps_the_claims_and_drops_the_signature(token: str, dev: DevIssuer) -> None:
    forged = alg_none(token)
    assert header(forged)["alg"] == "none" and forged.endswith(".")
    assert claims(forged) == claims(token)
    with pytest.raises(jwt.InvalidTokenError):
        verify(dev, forged)


def test_a_forged_signature_keeps_header_and_claims(token: str, dev: DevIssuer) -> None:
    forged = forged_signature(token)
    assert header(forged) == header(token) and claims(forged) == claims(token)
    assert forged != token
    with pytest.raises(jwt.InvalidSignatureError):
        verify(dev, forged)


def test_the_issuers_key_resigns_expired_and_for_another_audience(
    tmp_path: Path, token: str, dev: DevIssuer
) -> None:
    resigner = Resigner(Issuer(dev_data_dir=tmp_path / "issuer"))
    expired = resigner.expired(token)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(dev, expired)
    assert claims(expired)["exp"] < time.time() and claims(expired)["sub"] == "alice"
    elsewhere = resigner.wrong_audience(token)
    with pytest.raises(jwt.InvalidAudienceError):
        verify(dev, elsewhere)
    assert verify(dev, elsewhere, audience=WRONG_AUDIENCE)["tid"] == "t-acme"
    same = Resigner(Issuer(private_key=tmp_path / "issuer" / KEY_FILE))
    assert claims(same.wrong_audience(token))["aud"] == WRONG_AUDIENCE


def test_an_unusable_issuer_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("not a key")
    for issuer in (
        Issuer(private_key=tmp_path / "k.pem"),
        Issuer(private_key=tmp_path / "missing.pem"),
    ):
        with pytest.raises(ProbeConfigError, match="cannot load the private key"):
            Resigner(issuer)
