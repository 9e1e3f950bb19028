"""Parse-once verification: the header read before PyJWT verifies, and the checks that
moved from ``jwt.decode`` into the verifier, still refuse every forged or stretched token."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from tenancy.clock import FrozenClock
from tenancy.context import TenantContext, bind
from tenancy.errors import InvalidToken
from tenancy.propagation import (
    CONTEXT_TOKEN_TYPE,
    ContextTokenMinter,
    ContextTokenVerifier,
    ServiceKeyring,
)
from tenancy.propagation import verify as verify_module
from tenancy.tenants import Tenant
from tests.unit.propagation.conftest import WORKLOGS

READ = ["worklogs:read"]


def _segment(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _header_of(token: str) -> dict[str, object]:
    return dict(jwt.get_unverified_header(token))


def _with_header(token: str, **changes: object) -> str:
    """``token`` with its header rewritten and its payload and signature kept."""
    _, payload, signature = token.split(".")
    return f"{_segment({**_header_of(token), **changes})}.{payload}.{signature}"


def _claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _signed(ring: ServiceKeyring, claims: dict[str, object], **header: object) -> str:
    """``claims`` as they are (PyJWS: ``jwt.encode`` refuses a non-string ``iss``), signed
    with the edge's real key."""
    key = ring.active
    headers = {"kid": key.kid, "typ": CONTEXT_TOKEN_TYPE, **header}
    payload = json.dumps(claims).encode()
    return jwt.PyJWS().encode(payload, key.private_key, algorithm="EdDSA", headers=headers)


@pytest.fixture
def token(minter: ContextTokenMinter, acme_ctx: TenantContext) -> str:
    return minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)


@pytest.fixture
def warm(
    ctx_verifier: ContextTokenVerifier, minter: ContextTokenMinter, acme_ctx: TenantContext
) -> ContextTokenVerifier:
    """The verifier after one good token: the edge key's header is remembered."""
    ctx_verifier.verify(minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ))
    return ctx_verifier


def test_kid_swapped_for_another_published_key_of_the_signer_fails(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str
) -> None:
    # The "next" key is in the edge's JWKS, but it did not sign this: the header is part
    # of what the signature covers, so the signature check refuses it.
    next_kid = next(k["kid"] for k in edge_ring.jwks()["keys"] if k["kid"] != edge_ring.active.kid)
    with pytest.raises(InvalidToken, match="verification failed"):
        warm.verify(_with_header(token, kid=next_kid))


def test_kid_swapped_for_an_unknown_key_fails(warm: ContextTokenVerifier, token: str) -> None:
    with pytest.raises(InvalidToken, match="unknown signing key"):
        warm.verify(_with_header(token, kid="A" * 43))


@pytest.mark.parametrize("kid", [None, 7, "", "k" * 300])
def test_missing_or_malformed_kid_fails(
    warm: ContextTokenVerifier, token: str, kid: object
) -> None:
    with pytest.raises(InvalidToken, match="kid"):
        warm.verify(_with_header(token, kid=kid))


def test_remembered_header_on_a_token_signed_by_another_key_fails(
    warm: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    clock: FrozenClock,
    acme_ctx: TenantContext,
) -> None:
    # The exact header segment the verifier remembers, on a token signed by an impostor:
    # the remembered header picks the edge's key, and the signature check refuses it.
    impostor = ServiceKeyring.generate("edge", clock=clock)
    forged = ContextTokenMinter(impostor, clock=clock).mint(
        acme_ctx, audience=WORKLOGS, scopes=READ
    )
    genuine = ContextTokenMinter(edge_ring, clock=clock).mint(
        acme_ctx, audience=WORKLOGS, scopes=READ
    )
    head = genuine.split(".")[0]
    _, payload, signature = forged.split(".")
    with pytest.raises(InvalidToken, match="verification failed"):
        warm.verify(f"{head}.{payload}.{signature}")


def test_remembered_header_with_a_tampered_payload_fails(
    warm: ContextTokenVerifier, token: str, globex: Tenant
) -> None:
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = _segment({**claims, "tid": globex.id})
    with pytest.raises(InvalidToken, match="verification failed"):
        warm.verify(f"{head}.{forged}.{signature}")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_or_symmetric_tokens_are_refused_by_a_warm_verifier(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str, alg: str
) -> None:
    claims = _claims_of(token)
    header = {"kid": edge_ring.active.kid, "typ": CONTEXT_TOKEN_TYPE}
    if alg == "none":
        forged = jwt.encode(claims, None, algorithm="none", headers=header)
    else:  # the public key used as an HMAC secret
        secret = str(edge_ring.active.jwk["x"]).encode()
        forged = jwt.encode(claims, secret, algorithm="HS256", headers=header)
    with pytest.raises(InvalidToken, match="not allowed"):
        warm.verify(forged)


def test_alg_relabelled_on_a_genuine_signature_is_refused(
    warm: ContextTokenVerifier, token: str
) -> None:
    with pytest.raises(InvalidToken, match="not allowed"):
        warm.verify(_with_header(token, alg="ES256"))


@pytest.mark.parametrize(
    "forged",
    [
        "no-dots-at-all",
        "!!!!.e30.c2ln",
        f"{_segment(b'[1, 2]')}.e30.c2ln",
        f"{_segment(b'not json')}.e30.c2ln",
        "e3=0.e30.c2ln",  # padding in the middle
        f"{_segment({'typ': CONTEXT_TOKEN_TYPE, 'x': 'y' * 2000})}.e30.c2ln",
        "éé.e30.c2ln",
    ],
)
def test_malformed_headers_are_refused_before_any_key_lookup(
    ctx_verifier: ContextTokenVerifier, forged: str
) -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        ctx_verifier.verify(forged)


def test_detached_payload_headers_are_refused(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str
) -> None:
    key = edge_ring.active
    detached = jwt.PyJWS().encode(
        json.dumps(_claims_of(token)).encode(),
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": CONTEXT_TOKEN_TYPE},
        is_payload_detached=True,
    )
    with pytest.raises(InvalidToken, match="verification failed"):
        warm.verify(detached)


def test_a_signed_payload_that_is_not_an_object_is_refused(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring
) -> None:
    key = edge_ring.active
    signed = jwt.PyJWS().encode(
        b"[1, 2, 3]",
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": CONTEXT_TOKEN_TYPE},
    )
    with pytest.raises(InvalidToken, match="not a JSON object"):
        warm.verify(signed)


@pytest.mark.parametrize("claim", ["rid", "jti", "aud", "iss", "exp", "tid", "scope"])
def test_each_required_claim_missing_or_null_is_refused(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str, claim: str
) -> None:
    claims = _claims_of(token)
    del claims[claim]
    with pytest.raises(InvalidToken, match=f"missing the '{claim}' claim"):
        warm.verify(_signed(edge_ring, claims))
    with pytest.raises(InvalidToken, match=f"missing the '{claim}' claim"):
        warm.verify(_signed(edge_ring, {**claims, claim: None}))


@pytest.mark.parametrize("aud", [[WORKLOGS], [WORKLOGS, "billing"], "", "Worklogs"])
def test_audience_must_be_exactly_this_service_as_one_string(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str, aud: object
) -> None:
    with pytest.raises(InvalidToken, match=r"audience|missing the 'aud'"):
        warm.verify(_signed(edge_ring, {**_claims_of(token), "aud": aud}))


@pytest.mark.parametrize("iss", ["billing", ["edge"], "EDGE"])
def test_issuer_must_be_the_service_whose_key_signed(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str, iss: object
) -> None:
    with pytest.raises(InvalidToken, match="issuer"):
        warm.verify(_signed(edge_ring, {**_claims_of(token), "iss": iss}))


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        ("ver", True, "version"),
        ("ver", 1.5, "version"),
        ("kind", ["user"], "kind or aal"),
        ("kind", {"user": 1}, "kind or aal"),
        ("aal", 2.0, "kind or aal"),
        ("aal", 99, "kind or aal"),
        ("aal", [1], "kind or aal"),
        ("tid", "0E0C0F1E-0000-4000-8000-000000000000", "canonical"),
        ("tid", "{0e0c0f1e-0000-4000-8000-000000000000}", "canonical"),
        ("tid", "0e0c0f1e000040008000000000000000", "canonical"),
        ("tid", 12, "tid"),
        ("nbf", "soon", "NumericDate"),
    ],
)
def test_claims_once_checked_by_pyjwt_or_the_enums_are_still_refused(
    warm: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    token: str,
    claim: str,
    value: object,
    reason: str,
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        warm.verify(_signed(edge_ring, {**_claims_of(token), claim: value}))


def test_nbf_in_the_future_is_refused_and_in_the_past_accepted(
    warm: ContextTokenVerifier, edge_ring: ServiceKeyring, token: str, clock: FrozenClock
) -> None:
    claims = _claims_of(token)
    now = int(clock.timestamp())
    with pytest.raises(InvalidToken, match="not valid yet"):
        warm.verify(_signed(edge_ring, {**claims, "nbf": now + 30}))
    accepted = warm.verify(_signed(edge_ring, {**claims, "nbf": now - 1, "jti": "n" * 22}))
    assert accepted.principal.subject == "alice"


def test_remembered_headers_stay_bounded(
    warm: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verify_module, "MAX_REMEMBERED_HEADERS", 2)
    claims = _claims_of(token)
    for n in range(5):  # five distinct, validly signed header segments
        verified = warm.verify(_signed(edge_ring, {**claims, "jti": f"{n}" * 22}, x=n))
        assert verified.jti == f"{n}" * 22
        assert len(warm._headers) <= 2


def test_bytes_tokens_verify_like_strings(
    ctx_verifier: ContextTokenVerifier, minter: ContextTokenMinter, acme_ctx: TenantContext
) -> None:
    with bind(acme_ctx):
        first = minter.mint(audience=WORKLOGS, scopes=READ)
        second = minter.mint(audience=WORKLOGS, scopes=READ)
    assert ctx_verifier.verify(first.encode()).principal == ctx_verifier.verify(second).principal
