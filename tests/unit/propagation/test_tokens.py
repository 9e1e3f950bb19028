"""Context tokens: what a backend accepts, and every forged, stale or stretched token it refuses."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import jwt
import pytest

from tenancy.clock import FrozenClock
from tenancy.context import PrincipalKind, TenantContext, bind
from tenancy.errors import ConfigurationError, InsufficientScope, InvalidToken, NoTenantContext
from tenancy.identity import DevIssuer
from tenancy.propagation import (
    CONTEXT_TOKEN_TYPE,
    ContextTokenMinter,
    ContextTokenVerifier,
    MemoryReplayGuard,
    ServiceKeyring,
    trusted_service,
)
from tenancy.tenants import Tenant
from tests.unit.propagation.conftest import DELEGABLE, EDGE, WORKLOGS, context_of, keys_of

READ = ["worklogs:read"]


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_round_trip_carries_the_context_with_only_the_requested_scopes(
    minter: ContextTokenMinter, ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext
) -> None:
    with bind(acme_ctx):
        token = minter.mint(audience=WORKLOGS, scopes=READ)
    verified = ctx_verifier.verify(token)
    assert verified.principal.tenant_id == acme_ctx.tenant_id
    assert verified.principal.key == acme_ctx.principal.key
    assert verified.principal.scopes == {"worklogs:read"}  # attenuated, not the caller's two
    assert verified.principal.assurance == acme_ctx.principal.assurance
    assert verified.principal.roles == acme_ctx.principal.roles
    assert (verified.caller, verified.request_id, verified.region) == (
        EDGE,
        "rid-1",
        acme_ctx.region,
    )


def test_token_is_short_lived_versioned_and_carries_no_user_token(
    minter: ContextTokenMinter, acme_ctx: TenantContext
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    header = jwt.get_unverified_header(token)
    claims = claims_of(token)
    assert header["typ"] == CONTEXT_TOKEN_TYPE and header["alg"] == "EdDSA"
    assert claims["ver"] == 1 and claims["aud"] == WORKLOGS and claims["iss"] == EDGE
    assert 0 < int(claims["exp"]) - int(claims["iat"]) <= 60  # type: ignore[call-overload]
    assert set(claims) == {
        "ver",
        "iss",
        "aud",
        "sub",
        "piss",
        "kind",
        "roles",
        "aal",
        "tid",
        "region",
        "scope",
        "rid",
        "iat",
        "exp",
        "jti",
    }


def test_minting_without_a_bound_context_is_refused(minter: ContextTokenMinter) -> None:
    with pytest.raises(NoTenantContext):
        minter.mint(audience=WORKLOGS, scopes=READ)


def test_minting_scopes_beyond_the_callers_is_refused(
    minter: ContextTokenMinter, acme: Tenant
) -> None:
    reader = context_of(acme, scopes=frozenset({"worklogs:read"}))
    with bind(reader), pytest.raises(InsufficientScope) as refused:
        minter.mint(audience=WORKLOGS, scopes=["worklogs:read", "worklogs:write"])
    assert refused.value.scope == "worklogs:write"


@pytest.mark.parametrize("ttl", [0, 61, 3600])
def test_minting_longer_than_a_minute_is_refused(
    minter: ContextTokenMinter, acme_ctx: TenantContext, ttl: int
) -> None:
    with pytest.raises(ConfigurationError):
        minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ, ttl=ttl)


def test_token_for_another_service_is_refused(
    minter: ContextTokenMinter, ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext
) -> None:
    token = minter.mint(acme_ctx, audience="billing", scopes=READ)
    with pytest.raises(InvalidToken, match=r"(?i)audience"):
        ctx_verifier.verify(token)


def test_expired_token_is_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    acme_ctx: TenantContext,
    clock: FrozenClock,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    clock.advance(60 + 5)  # lifetime plus the verifier's leeway
    with pytest.raises(InvalidToken, match="expired"):
        ctx_verifier.verify(token)


def test_replayed_token_is_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    acme_ctx: TenantContext,
    clock: FrozenClock,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    ctx_verifier.verify(token)
    clock.advance(30)
    with pytest.raises(InvalidToken, match="replayed"):
        ctx_verifier.verify(token)


def test_replay_guard_forgets_ids_only_after_their_token_can_no_longer_verify(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    acme_ctx: TenantContext,
    clock: FrozenClock,
    replay_guard: MemoryReplayGuard,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    ctx_verifier.verify(token)
    clock.advance(64)  # inside lifetime + leeway: still remembered
    with pytest.raises(InvalidToken, match="replayed"):
        ctx_verifier.verify(token)
    assert len(replay_guard) == 1
    clock.advance(2)
    with pytest.raises(InvalidToken, match="expired"):
        ctx_verifier.verify(token)


def test_full_replay_guard_refuses_rather_than_forgets(
    minter: ContextTokenMinter,
    edge_ring: ServiceKeyring,
    clock: FrozenClock,
    acme_ctx: TenantContext,
) -> None:
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        replay=MemoryReplayGuard(max_entries=2),
        services=[trusted_service(EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE)],
    )
    tokens = [minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ) for _ in range(3)]
    verifier.verify(tokens[0])
    verifier.verify(tokens[1])
    with pytest.raises(InvalidToken, match="guard full"):
        verifier.verify(tokens[2])
    with pytest.raises(InvalidToken, match="replayed"):  # the first is still remembered
        verifier.verify(tokens[0])


def test_token_signed_by_an_unknown_issuer_is_refused(
    ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext, clock: FrozenClock
) -> None:
    stranger = ContextTokenMinter(ServiceKeyring.generate("billing", clock=clock), clock=clock)
    with pytest.raises(InvalidToken, match="no trusted service holds it"):
        ctx_verifier.verify(stranger.mint(acme_ctx, audience=WORKLOGS, scopes=READ))


def test_trusted_key_cannot_speak_for_another_service(
    minter: ContextTokenMinter,
    edge_ring: ServiceKeyring,
    clock: FrozenClock,
    acme_ctx: TenantContext,
) -> None:
    # Both services are trusted, but the edge's key may only sign as the edge: the one
    # with the wider delegation ceiling cannot be impersonated.
    batch = ServiceKeyring.generate("batch", clock=clock)
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[
            trusted_service(EDGE, keys=keys_of(edge_ring), scopes={"worklogs:read"}),
            trusted_service("batch", keys=keys_of(batch), scopes=DELEGABLE),
        ],
    )
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    with pytest.raises(InvalidToken, match=r"(?i)issuer"):
        verifier.verify(_resign(token, edge_ring, iss="batch", scope="worklogs:write"))


def test_token_naming_a_trusted_issuer_but_signed_by_another_key_is_refused(
    ctx_verifier: ContextTokenVerifier, acme_ctx: TenantContext, clock: FrozenClock
) -> None:
    impostor = ContextTokenMinter(ServiceKeyring.generate(EDGE, clock=clock), clock=clock)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        ctx_verifier.verify(impostor.mint(acme_ctx, audience=WORKLOGS, scopes=READ))


def test_scopes_beyond_what_the_service_may_delegate_are_refused(
    edge_ring: ServiceKeyring, minter: ContextTokenMinter, clock: FrozenClock, acme: Tenant
) -> None:
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[trusted_service(EDGE, keys=keys_of(edge_ring), scopes={"worklogs:read"})],
    )
    admin = context_of(acme, scopes=frozenset({"worklogs:read", "worklogs:admin"}))
    token = minter.mint(admin, audience=WORKLOGS, scopes=["worklogs:admin"])
    with pytest.raises(InvalidToken, match="beyond what 'edge' may delegate"):
        verifier.verify(token)


def test_users_access_token_is_not_a_context_token(
    ctx_verifier: ContextTokenVerifier, issuer: DevIssuer, acme: Tenant
) -> None:
    user_token = issuer.mint(tenant_id=acme.id, subject="alice", audience=WORKLOGS, scopes=READ)
    with pytest.raises(InvalidToken, match="not a context token"):
        ctx_verifier.verify(user_token)


def _resign(
    token: str, ring: ServiceKeyring, *, header: dict[str, object] | None = None, **changes: object
) -> str:
    """Re-sign ``token``'s claims with ``changes`` using the edge's real key."""
    claims = {**claims_of(token), **changes}
    key = ring.active
    headers = {"kid": key.kid, "typ": CONTEXT_TOKEN_TYPE, **(header or {})}
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers=headers)


def test_validly_signed_token_with_a_wrong_type_is_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    acme_ctx: TenantContext,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    with pytest.raises(InvalidToken, match="not a context token"):
        ctx_verifier.verify(_resign(token, edge_ring, header={"typ": "at+jwt"}))


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        ("exp", "in-a-minute", "NumericDate"),
        ("ver", 2, "version"),
        ("kind", "support", "may not forward"),
        ("kind", "root", "kind or aal"),
        ("aal", True, "kind or aal"),
        ("roles", "admin", "roles"),
        ("tid", "ACME", "tid"),
        ("region", "../eu", "region"),
        ("jti", "short", "jti"),
        ("scope", ["worklogs:read"], "scope"),
        ("piss", "", "piss"),
        ("sub", "alice\u0000admin", "sub claim holds a control character"),
        ("sub", "alice\ud800", "sub claim holds a control character"),
        ("piss", "https://issuer\u001b[0m", "piss claim holds a control character"),
        ("roles", ["member\u0000x"], "roles claim holds a control character"),
        ("scope", "worklogs:read\u0085", "scope claim holds a control character"),
    ],
)
def test_signed_token_with_a_malformed_claim_is_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    acme_ctx: TenantContext,
    claim: str,
    value: object,
    reason: str,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    with pytest.raises(InvalidToken, match=reason):
        ctx_verifier.verify(_resign(token, edge_ring, **{claim: value}))


def test_lifetime_stretched_by_the_signer_is_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    acme_ctx: TenantContext,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    iat = int(claims_of(token)["iat"])  # type: ignore[call-overload]
    with pytest.raises(InvalidToken, match="lifetime"):
        ctx_verifier.verify(_resign(token, edge_ring, exp=iat + 3600))


def test_tampered_payload_is_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    acme_ctx: TenantContext,
    globex: Tenant,
) -> None:
    token = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["tid"] = globex.id
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="verification failed"):
        ctx_verifier.verify(f"{head}.{forged}.{signature}")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_or_symmetric_tokens_are_refused(
    minter: ContextTokenMinter,
    ctx_verifier: ContextTokenVerifier,
    edge_ring: ServiceKeyring,
    acme_ctx: TenantContext,
    alg: str,
) -> None:
    claims = claims_of(minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ))
    header = {"kid": edge_ring.active.kid, "typ": CONTEXT_TOKEN_TYPE}
    if alg == "none":
        forged = jwt.encode(claims, None, algorithm="none", headers=header)
    else:  # the classic confusion: the public key used as an HMAC secret
        secret = str(edge_ring.active.jwk["x"]).encode()
        forged = jwt.encode(claims, secret, algorithm="HS256", headers=header)
    with pytest.raises(InvalidToken, match="not allowed"):
        ctx_verifier.verify(forged)


def test_es256_services_are_verified_when_configured(
    clock: FrozenClock, acme_ctx: TenantContext
) -> None:
    ring = ServiceKeyring.generate(EDGE, algorithm="ES256", clock=clock)
    token = ContextTokenMinter(ring, clock=clock).mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    pinned_eddsa = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[trusted_service(EDGE, keys=keys_of(ring, ("EdDSA", "ES256")), scopes=DELEGABLE)],
    )
    with pytest.raises(InvalidToken, match="not allowed"):
        pinned_eddsa.verify(token)
    es256 = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[
            trusted_service(
                EDGE, keys=keys_of(ring, ("ES256",)), scopes=DELEGABLE, algorithms=["ES256"]
            )
        ],
    )
    assert es256.verify(token).principal.subject == "alice"


def test_support_grant_id_travels_when_present(
    minter: ContextTokenMinter, acme: Tenant, clock: FrozenClock, edge_ring: ServiceKeyring
) -> None:
    plain = context_of(acme, sub="sam")
    support = replace(
        plain,
        principal=replace(plain.principal, kind=PrincipalKind.SUPPORT),
        support_grant_id="grant-42",
    )
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[
            trusted_service(
                EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE, kinds=[PrincipalKind.SUPPORT]
            )
        ],
    )
    verified = verifier.verify(minter.mint(support, audience=WORKLOGS, scopes=READ))
    assert verified.support_grant_id == "grant-42"
    assert verified.principal.kind is PrincipalKind.SUPPORT


@pytest.mark.parametrize(
    "bad", [{"audience": ""}, {"services": []}, {"leeway": 60}, {"max_lifetime": 0}]
)
def test_verifier_refuses_unsafe_configuration(
    edge_ring: ServiceKeyring, bad: dict[str, object]
) -> None:
    config: dict[str, object] = {
        "audience": WORKLOGS,
        "services": [trusted_service(EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE)],
    }
    with pytest.raises(ConfigurationError):
        ContextTokenVerifier(**{**config, **bad})  # type: ignore[arg-type]


def test_trusted_service_refuses_symmetric_algorithms(edge_ring: ServiceKeyring) -> None:
    with pytest.raises(ConfigurationError):
        trusted_service(EDGE, keys=keys_of(edge_ring), scopes=DELEGABLE, algorithms=["HS256"])
