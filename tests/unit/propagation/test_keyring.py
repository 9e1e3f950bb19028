"""Service keyrings: private keys stay private, rotation never breaks a token in flight."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import jwt
import pytest

from tenancy.clock import FrozenClock
from tenancy.context import TenantContext
from tenancy.errors import ConfigurationError, InvalidToken
from tenancy.identity import JWKSKeySource
from tenancy.propagation import (
    ContextTokenMinter,
    ContextTokenVerifier,
    ServiceKeyring,
    SigningKey,
    trusted_service,
)
from tests.unit.propagation.conftest import DELEGABLE, EDGE, WORKLOGS

READ = ["worklogs:read"]


def test_private_keys_are_written_0600_and_never_shown(tmp_path: Path) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path / "edge", EDGE)
    key_file = tmp_path / "edge" / "signing-keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key_file.read_text()
    public = json.loads((tmp_path / "edge" / "jwks.json").read_text())
    assert all("d" not in jwk for jwk in public["keys"])  # no private member published
    assert "PRIVATE" not in repr(ring) and "d=" not in repr(ring.active)


def test_reopened_keyring_signs_with_the_same_key(tmp_path: Path) -> None:
    first = ServiceKeyring.load_or_create(tmp_path / "edge", EDGE)
    again = ServiceKeyring.load_or_create(tmp_path / "edge", EDGE)
    assert again.active.kid == first.active.kid
    assert again.jwks() == first.jwks()


def test_unreadable_keyring_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "signing-keys.json").write_text('{"version": 99, "keys": []}')
    with pytest.raises(ConfigurationError, match="unsupported keyring format"):
        ServiceKeyring.load_or_create(tmp_path / "edge", EDGE)


@pytest.mark.parametrize("name", ["", "edge service", "édge"])
def test_service_names_must_be_plain(name: str) -> None:
    with pytest.raises(ConfigurationError):
        ServiceKeyring.generate(name)


def test_rotation_is_seamless_for_a_verifier_with_a_cached_jwks(
    tmp_path: Path, clock: FrozenClock, acme_ctx: TenantContext
) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path / "edge", EDGE, clock=clock, retain=600)
    keys = JWKSKeySource.from_file(tmp_path / "edge" / "jwks.json", algorithms=["EdDSA"])
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[trusted_service(EDGE, keys=keys, scopes=DELEGABLE)],
    )
    minter = ContextTokenMinter(ring, clock=clock)
    in_flight = minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ)
    verifier.verify(minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ))
    fetches = keys.fetch_count

    old_kid = ring.active.kid
    new_active = ring.rotate()
    assert new_active.kid != old_kid
    # The new active key was published as "next" before it signed anything, so the
    # verifier needs no fetch for it, and the token signed before rotation still verifies.
    verifier.verify(minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ))
    verifier.verify(in_flight)
    assert keys.fetch_count == fetches

    # Once the retired key's retention passes it leaves the JWKS; a token it signed is
    # refused after the verifier's next refresh.
    clock.advance(601)
    ring.save()
    assert old_kid not in {k["kid"] for k in ring.jwks()["keys"]}
    keys.refresh(clock.timestamp())
    assert keys.lookup(old_kid) is None


def test_token_signed_by_a_retired_and_expired_key_is_refused(
    clock: FrozenClock, acme_ctx: TenantContext
) -> None:
    ring = ServiceKeyring.generate(EDGE, clock=clock, retain=120)
    old_key = ring.active
    ring.rotate()
    clock.advance(121)
    keys = JWKSKeySource(lambda: ring.jwks(), algorithms=["EdDSA"], min_refresh_interval=0)
    verifier = ContextTokenVerifier(
        audience=WORKLOGS,
        clock=clock,
        services=[trusted_service(EDGE, keys=keys, scopes=DELEGABLE)],
    )
    # A holder of the retired private key mints a fresh-looking token with it.
    leaked = ContextTokenMinter(
        ServiceKeyring(EDGE, [SigningKey(old_key.private_key, "active")]), clock=clock
    )
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(leaked.mint(acme_ctx, audience=WORKLOGS, scopes=READ))


def test_keyring_needs_exactly_one_active_key(clock: FrozenClock) -> None:
    ring = ServiceKeyring.generate(EDGE, clock=clock)
    with pytest.raises(ConfigurationError):
        ServiceKeyring(EDGE, [ring.active, ring.active])
    with pytest.raises(ConfigurationError):
        ServiceKeyring.generate(EDGE, algorithm="HS256")


def test_concurrent_opens_agree_on_one_keyring(tmp_path: Path) -> None:
    # Workers or replicas on one volume may start together: exactly one keyring may win,
    # or a process would sign with a key that no JWKS publishes.
    barrier = threading.Barrier(8)
    kids: list[str] = []

    def open_ring() -> None:
        barrier.wait()
        kids.append(ServiceKeyring.load_or_create(tmp_path / "edge", EDGE).active.kid)

    threads = [threading.Thread(target=open_ring) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    jwks = json.loads((tmp_path / "edge" / "jwks.json").read_text())
    published = {k["kid"] for k in jwks["keys"]}
    assert len(kids) == 8 and len(set(kids)) == 1 and kids[0] in published
    assert sorted(p.name for p in (tmp_path / "edge").iterdir()) == [
        "jwks.json",
        "signing-keys.json",
    ]


def test_another_services_keyring_is_refused(tmp_path: Path) -> None:
    ServiceKeyring.load_or_create(tmp_path / "billing", "billing")
    with pytest.raises(ConfigurationError, match="another service"):
        ServiceKeyring.load_or_create(tmp_path / "billing", "orders")


def test_a_keyring_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    (folder / "signing-keys.json").write_text("[]")
    with pytest.raises(ConfigurationError):
        ServiceKeyring.load_or_create(folder, EDGE)


def test_minting_follows_the_active_key_through_rotations(
    clock: FrozenClock, acme_ctx: TenantContext
) -> None:
    ring = ServiceKeyring.generate(EDGE, clock=clock)
    minter = ContextTokenMinter(ring, clock=clock)
    for _ in range(3):
        published = ring.jwks()["keys"]
        kid = jwt.get_unverified_header(minter.mint(acme_ctx, audience=WORKLOGS, scopes=READ))[
            "kid"
        ]
        assert kid == ring.active.kid and kid in {k["kid"] for k in published}
        previous = ring.active
        ring.rotate()
        assert ring.active.kid != previous.kid
        assert ring.active.algorithm == previous.algorithm == "EdDSA"
        # A key keeps its kid and algorithm as its state changes.
        retired = next(k for k in ring._keys if k.kid == previous.kid)
        assert retired.state == "retired" and retired.algorithm == "EdDSA"
