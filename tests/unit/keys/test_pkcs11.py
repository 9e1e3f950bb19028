"""Pkcs11KeyProvider against a real PKCS#11 token (SoftHSM2): every wrap and unwrap is an
AES-GCM operation inside the token, under a key that never leaves it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from tenancy.errors import ConfigurationError, DecryptionFailed, KeyDestroyed, KeyUnavailable
from tenancy.keys.pkcs11 import Pkcs11KeyProvider
from tenancy.keys.provider import KeyProvider, KeyRef, ProviderUnavailable, context_bytes
from tests.support.softhsm import SoftHSMToken, softhsm_token

DEK = bytes(range(32))


def ctx(
    tenant: str = "t-1",
    purpose: str = "worklogs.comment",
    dek_version: str = "1",
) -> dict[str, str]:
    return {"tenant_id": tenant, "purpose": purpose, "dek_version": dek_version}


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSMToken]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as tok:
        yield tok


def open_provider(token: SoftHSMToken) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider(token.library, token_label=token.token_label, user_pin=token.pin)


@pytest.fixture
def provider(token: SoftHSMToken) -> Iterator[Pkcs11KeyProvider]:
    with open_provider(token) as p:
        yield p


@pytest.fixture
def other(token: SoftHSMToken) -> Iterator[Pkcs11KeyProvider]:
    """A second provider on the same token, as another service instance would have."""
    with open_provider(token) as p:
        yield p


@pytest.fixture
def raw(token: SoftHSMToken, provider: Pkcs11KeyProvider) -> Iterator[pkcs11.Session]:
    """A plain python-pkcs11 session on the token, to look at what the provider left there
    (it sees private objects because the process is logged in through ``provider``)."""
    session = pkcs11.lib(token.library).get_token(token_label=token.token_label).open(rw=True)
    yield session
    session.close()


def key_objects(session: pkcs11.Session, key: KeyRef) -> list[Any]:
    """The key's version objects (``Any``: python-pkcs11 mixes in decrypt() at run time)."""
    return list(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.ID: key.key_id.encode()}
        )
    )


# -- round trips -----------------------------------------------------------------------


def test_the_provider_satisfies_the_key_provider_protocol(provider: Pkcs11KeyProvider) -> None:
    assert isinstance(provider, KeyProvider)
    assert provider.name == "pkcs11"
    assert "1234" not in repr(provider)


def test_wrap_then_unwrap_returns_the_dek(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    assert key.provider == "pkcs11" and key.version == "1"
    assert key.key_id.startswith("kek-t-1-")

    blob, used = provider.wrap(key, DEK, context=ctx())

    assert used == KeyRef("pkcs11", key.key_id, "1")
    assert len(blob) == 12 + len(DEK) + 16
    assert DEK not in blob
    assert provider.unwrap(used, blob, context=ctx()) == DEK


def test_each_wrap_uses_a_fresh_iv(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    first, _ = provider.wrap(key, DEK, context=ctx())
    second, _ = provider.wrap(key, DEK, context=ctx())
    assert first[:12] != second[:12] and first != second


def test_another_provider_instance_unwraps_what_one_wrapped(
    provider: Pkcs11KeyProvider, other: Pkcs11KeyProvider
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    assert other.unwrap(used, blob, context=ctx()) == DEK


def test_concurrent_wraps_on_one_provider_all_round_trip(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                dek = os.urandom(32)
                blob, used = provider.wrap(key, dek, context=ctx(dek_version=f"{n}.{i}"))
                assert provider.unwrap(used, blob, context=ctx(dek_version=f"{n}.{i}")) == dek
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- binding and integrity ---------------------------------------------------------------


def test_a_dek_wrapped_for_one_tenant_does_not_unwrap_for_another(
    provider: Pkcs11KeyProvider,
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx(tenant="t-1"))
    with pytest.raises(DecryptionFailed):
        provider.unwrap(used, blob, context=ctx(tenant="t-2"))


def test_a_dek_wrapped_for_one_purpose_does_not_unwrap_for_another(
    provider: Pkcs11KeyProvider,
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx(purpose="worklogs.comment"))
    with pytest.raises(DecryptionFailed):
        provider.unwrap(used, blob, context=ctx(purpose="invoices.iban"))
    with pytest.raises(DecryptionFailed):
        provider.unwrap(used, blob, context=ctx(dek_version="2"))


@pytest.mark.parametrize("where", ["iv", "ciphertext", "tag"])
def test_a_tampered_blob_does_not_unwrap(provider: Pkcs11KeyProvider, where: str) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    index = {"iv": 0, "ciphertext": 12 + 5, "tag": len(blob) - 1}[where]
    tampered = bytearray(blob)
    tampered[index] ^= 0x01
    with pytest.raises(DecryptionFailed):
        provider.unwrap(used, bytes(tampered), context=ctx())


@pytest.mark.parametrize("length", [0, 11, 27, 40])
def test_a_truncated_blob_does_not_unwrap(provider: Pkcs11KeyProvider, length: int) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    with pytest.raises(DecryptionFailed):
        provider.unwrap(used, blob[:length], context=ctx())


def test_a_blob_wrapped_under_another_tenants_kek_does_not_unwrap(
    provider: Pkcs11KeyProvider,
) -> None:
    mine = provider.create_key(tenant_id="t-1")
    theirs = provider.create_key(tenant_id="t-2")
    blob, _ = provider.wrap(theirs, DEK, context=ctx())
    with pytest.raises(DecryptionFailed):
        provider.unwrap(mine, blob, context=ctx())


# -- rotation -----------------------------------------------------------------------------


def test_rotation_keeps_old_versions_unwrapping_and_wraps_under_the_new_one(
    provider: Pkcs11KeyProvider,
) -> None:
    key = provider.create_key(tenant_id="t-1")
    old_blob, v1 = provider.wrap(key, DEK, context=ctx())

    rotated = provider.rotate(key)

    assert rotated == KeyRef("pkcs11", key.key_id, "2")
    assert provider.unwrap(v1, old_blob, context=ctx()) == DEK
    new_blob, v2 = provider.wrap(key, DEK, context=ctx())
    assert v2.version == "2"
    assert provider.unwrap(v2, new_blob, context=ctx()) == DEK
    with pytest.raises(DecryptionFailed):  # each version is its own key
        provider.unwrap(v1, new_blob, context=ctx())


def test_rewrap_moves_a_dek_from_v1_to_v2(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, v1 = provider.wrap(key, DEK, context=ctx())
    provider.rotate(key)

    rewrapped, v2 = provider.wrap(key, provider.unwrap(v1, blob, context=ctx()), context=ctx())

    assert v2.version == "2"
    assert provider.unwrap(v2, rewrapped, context=ctx()) == DEK


def test_the_highest_version_is_current_after_several_rotations(
    provider: Pkcs11KeyProvider,
) -> None:
    key = provider.create_key(tenant_id="t-1")
    for _ in range(10):
        key = provider.rotate(key)
    assert key.version == "11"  # compared as numbers, not strings ("9" > "11")
    _, used = provider.wrap(key, DEK, context=ctx())
    assert used.version == "11"


# -- the key stays in the HSM -------------------------------------------------------------


def test_the_kek_lives_on_the_token_non_extractable_and_sensitive(
    provider: Pkcs11KeyProvider, raw: pkcs11.Session
) -> None:
    key = provider.rotate(provider.create_key(tenant_id="t-1"))

    objects = key_objects(raw, key)

    assert sorted(o[Attribute.LABEL] for o in objects) == [
        f"tenancy:{key.key_id}:1",
        f"tenancy:{key.key_id}:2",
    ]
    for obj in objects:
        attrs = obj.get_attributes(
            [
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.LOCAL,
                Attribute.COPYABLE,
                Attribute.ENCRYPT,
                Attribute.DECRYPT,
                Attribute.WRAP,
                Attribute.UNWRAP,
                Attribute.SIGN,
                Attribute.VALUE_LEN,
            ]
        )
        assert attrs == {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ALWAYS_SENSITIVE: True,
            Attribute.NEVER_EXTRACTABLE: True,
            Attribute.LOCAL: True,
            Attribute.COPYABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.VALUE_LEN: 32,
        }
        with pytest.raises(p11.AttributeSensitive):
            obj[Attribute.VALUE]
        with pytest.raises(p11.AttributeReadOnly):  # and it cannot be made extractable
            obj[Attribute.EXTRACTABLE] = True


def test_unwrap_runs_inside_the_token(provider: Pkcs11KeyProvider, raw: pkcs11.Session) -> None:
    """The blob is plain AES-GCM under the token's key: the token alone opens it."""
    key = provider.create_key(tenant_id="t-1")
    blob, _ = provider.wrap(key, DEK, context=ctx())
    (obj,) = key_objects(raw, key)
    params = pkcs11.GCMParams(blob[:12], context_bytes(ctx()), 128)
    assert obj.decrypt(blob[12:], mechanism=Mechanism.AES_GCM, mechanism_param=params) == DEK


# -- revocation ---------------------------------------------------------------------------


def test_a_disabled_key_neither_wraps_nor_unwraps_and_enable_restores_it(
    provider: Pkcs11KeyProvider,
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())

    provider.disable(key)

    assert provider.describe(key).enabled is False
    with pytest.raises(KeyUnavailable) as wrap_error:
        provider.wrap(key, DEK, context=ctx())
    with pytest.raises(KeyUnavailable) as unwrap_error:
        provider.unwrap(used, blob, context=ctx())
    assert not isinstance(wrap_error.value, KeyDestroyed)
    assert not isinstance(unwrap_error.value, KeyDestroyed)

    provider.enable(key)

    assert provider.describe(key).enabled is True
    assert provider.unwrap(used, blob, context=ctx()) == DEK
    again, used2 = provider.wrap(key, DEK, context=ctx())
    assert provider.unwrap(used2, again, context=ctx()) == DEK


def test_disable_clears_encrypt_and_decrypt_so_the_hsm_itself_refuses(
    provider: Pkcs11KeyProvider, raw: pkcs11.Session
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, _ = provider.wrap(key, DEK, context=ctx())
    (looked_up_before,) = key_objects(raw, key)
    params = pkcs11.GCMParams(blob[:12], context_bytes(ctx()), 128)

    provider.disable(key)

    (read_after,) = key_objects(raw, key)
    assert read_after.get_attributes([Attribute.ENCRYPT, Attribute.DECRYPT]) == {
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
    }
    assert not hasattr(read_after, "decrypt")  # python-pkcs11 offers no decrypt() at all
    # An object looked up while the key was usable still has decrypt(), but the token
    # refuses: CKR_KEY_FUNCTION_NOT_PERMITTED (0x68, which python-pkcs11 does not map).
    with pytest.raises(p11.PKCS11Error, match="0x68"):
        looked_up_before.decrypt(blob[12:], mechanism=Mechanism.AES_GCM, mechanism_param=params)

    provider.enable(key)

    assert (
        looked_up_before.decrypt(blob[12:], mechanism=Mechanism.AES_GCM, mechanism_param=params)
        == DEK
    )


def test_a_key_disabled_through_one_provider_is_refused_by_another(
    provider: Pkcs11KeyProvider, other: Pkcs11KeyProvider
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = other.wrap(key, DEK, context=ctx())

    provider.disable(key)

    with pytest.raises(KeyUnavailable):
        other.unwrap(used, blob, context=ctx())
    assert other.describe(key).enabled is False
    other.enable(key)
    assert provider.unwrap(used, blob, context=ctx()) == DEK


def test_rotating_a_disabled_key_keeps_it_disabled(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    provider.disable(key)

    rotated = provider.rotate(key)

    assert provider.describe(key).enabled is False
    with pytest.raises(KeyUnavailable):
        provider.wrap(rotated, DEK, context=ctx())
    provider.enable(key)
    blob, used = provider.wrap(key, DEK, context=ctx())
    assert used.version == "2"
    assert provider.unwrap(used, blob, context=ctx()) == DEK


def test_disable_falls_back_to_a_marker_when_the_token_refuses_attribute_changes(
    provider: Pkcs11KeyProvider,
    other: Pkcs11KeyProvider,
    raw: pkcs11.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Some HSMs keep ENCRYPT/DECRYPT fixed: a private DATA object marks the key disabled."""
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    # A token that refuses every change of ENCRYPT/DECRYPT (so they stay True).
    monkeypatch.setattr(
        Pkcs11KeyProvider,
        "_set_usable",
        staticmethod(
            lambda state, usable: all(flags == (usable, usable) for flags in state.usable.values())
        ),
    )

    provider.disable(key)

    marker = f"tenancy:{key.key_id}:disabled"
    assert [
        o[Attribute.LABEL]
        for o in raw.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: marker})
    ] == [marker]
    for p in (provider, other):
        assert p.describe(key).enabled is False
        with pytest.raises(KeyUnavailable):
            p.wrap(key, DEK, context=ctx())
        with pytest.raises(KeyUnavailable):
            p.unwrap(used, blob, context=ctx())

    rotated = provider.rotate(key)  # born usable: the marker keeps it disabled
    with pytest.raises(KeyUnavailable):
        provider.wrap(rotated, DEK, context=ctx())

    other.enable(key)

    assert list(raw.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: marker})) == []
    assert provider.unwrap(used, blob, context=ctx()) == DEK
    assert provider.wrap(key, DEK, context=ctx())[1].version == "2"


def test_a_public_marker_does_not_disable_or_destroy_a_key(
    provider: Pkcs11KeyProvider, token: SoftHSMToken
) -> None:
    """Markers count only as private objects, which need the user PIN to create."""
    key = provider.create_key(tenant_id="t-1")
    for kind in ("disabled", "destroyed"):
        with (
            pkcs11.lib(token.library)
            .get_token(token_label=token.token_label)
            .open(rw=True) as session
        ):
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.APPLICATION: "tenancy",
                    Attribute.LABEL: f"tenancy:{key.key_id}:{kind}",
                    Attribute.VALUE: b"",
                }
            )
    blob, used = provider.wrap(key, DEK, context=ctx())
    assert provider.unwrap(used, blob, context=ctx()) == DEK


# -- crypto-shredding ---------------------------------------------------------------------


def test_destroy_shreds_every_version_and_later_use_raises_key_destroyed(
    provider: Pkcs11KeyProvider, raw: pkcs11.Session
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    provider.rotate(key)

    provider.destroy(key)

    assert key_objects(raw, key) == []
    with pytest.raises(KeyDestroyed):
        provider.wrap(key, DEK, context=ctx())
    with pytest.raises(KeyDestroyed):
        provider.unwrap(used, blob, context=ctx())
    for change in (provider.rotate, provider.disable, provider.enable):
        with pytest.raises(KeyDestroyed):
            change(key)
    info = provider.describe(key)
    assert (info.enabled, info.versions, info.ref.version) == (False, (), "2")
    provider.destroy(key)  # shredding twice is not an error


def test_destroying_again_finishes_a_destroy_that_stopped_half_way(
    provider: Pkcs11KeyProvider, raw: pkcs11.Session
) -> None:
    key = provider.rotate(provider.create_key(tenant_id="t-1"))
    raw.create_object(
        {  # the marker went down, then the process died
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.APPLICATION: "tenancy",
            Attribute.LABEL: f"tenancy:{key.key_id}:destroyed",
            Attribute.VALUE: b"2",
        }
    )
    assert len(key_objects(raw, key)) == 2
    with pytest.raises(KeyDestroyed):
        provider.wrap(key, DEK, context=ctx())

    provider.destroy(key)

    assert key_objects(raw, key) == []


def test_a_destroyed_key_reads_as_destroyed_from_a_new_provider_instance(
    provider: Pkcs11KeyProvider, token: SoftHSMToken
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    provider.destroy(key)
    provider.close()

    with open_provider(token) as fresh:
        with pytest.raises(KeyDestroyed):
            fresh.unwrap(used, blob, context=ctx())
        with pytest.raises(KeyDestroyed):
            fresh.wrap(key, DEK, context=ctx())


def test_destroying_a_disabled_key_destroys_it(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    provider.disable(key)
    provider.destroy(key)
    with pytest.raises(KeyDestroyed):
        provider.wrap(key, DEK, context=ctx())


# -- describe and lookups -----------------------------------------------------------------


def test_describe_reports_versions_enabled_and_location(
    provider: Pkcs11KeyProvider, token: SoftHSMToken
) -> None:
    key = provider.create_key(tenant_id="t-1")
    provider.rotate(key)
    provider.rotate(key)

    info = provider.describe(key)

    assert info.ref == KeyRef("pkcs11", key.key_id, "3")
    assert info.enabled is True
    assert info.versions == ("1", "2", "3")
    assert info.managed_by == "customer"
    assert info.location == f"pkcs11:{token.token_label}"


def test_an_unknown_key_or_version_raises_key_unavailable(provider: Pkcs11KeyProvider) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, _ = provider.wrap(key, DEK, context=ctx())
    for bad in (KeyRef("pkcs11", "kek-nobody-00000000", "1"), KeyRef("local", key.key_id, "1")):
        with pytest.raises(KeyUnavailable):
            provider.wrap(bad, DEK, context=ctx())
        with pytest.raises(KeyUnavailable):
            provider.describe(bad)
    with pytest.raises(KeyUnavailable):
        provider.unwrap(KeyRef("pkcs11", key.key_id, "7"), blob, context=ctx())


# -- configuration and failures -----------------------------------------------------------


def test_a_wrong_pin_at_construction_raises_configuration_error(token: SoftHSMToken) -> None:
    """Nobody in the process is logged in: the token itself refuses the PIN."""
    with pytest.raises(ConfigurationError):
        Pkcs11KeyProvider(token.library, token_label=token.token_label, user_pin="wrong-pin")


def test_a_wrong_pin_is_refused_even_while_the_process_is_logged_in(
    provider: Pkcs11KeyProvider, token: SoftHSMToken
) -> None:
    """PKCS#11 logs in once per process: a second provider cannot log in again, so its
    PIN is compared with the one the token accepted."""
    with pytest.raises(ConfigurationError):
        Pkcs11KeyProvider(token.library, token_label=token.token_label, user_pin="wrong-pin")
    with open_provider(token) as second:  # the right PIN joins the login
        key = second.create_key(tenant_id="t-1")
        assert second.describe(key).enabled


def test_closing_one_provider_does_not_log_out_another(
    provider: Pkcs11KeyProvider, token: SoftHSMToken
) -> None:
    """python-pkcs11 logs out when the session that logged in closes; the shared login
    keeps the token logged in while any provider still uses it."""
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    later = open_provider(token)
    provider.close()
    try:
        assert later.unwrap(used, blob, context=ctx()) == DEK
    finally:
        later.close()
    with open_provider(token) as again:  # nobody is logged in now: the token checks
        assert again.unwrap(used, blob, context=ctx()) == DEK
    with pytest.raises(ConfigurationError):
        open_provider(token._replace(pin="wrong-pin"))


def test_an_unknown_token_raises_configuration_error(token: SoftHSMToken) -> None:
    with pytest.raises(ConfigurationError):
        Pkcs11KeyProvider(token.library, token_label="no-such-token", user_pin=token.pin)


def test_a_missing_library_raises_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Pkcs11KeyProvider(str(tmp_path / "libnothing.so"), token_label="x", user_pin="1234")
    not_a_library = tmp_path / "libbroken.so"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(ConfigurationError):
        Pkcs11KeyProvider(str(not_a_library), token_label="x", user_pin="1234")


# python-pkcs11 leaves a failed object search "active" and finalises it again when it is
# garbage-collected, which raises (SessionHandleInvalid) inside __del__: noise, not a leak.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_lost_session_reports_provider_unavailable_then_reconnects(
    provider: Pkcs11KeyProvider,
) -> None:
    key = provider.create_key(tenant_id="t-1")
    blob, used = provider.wrap(key, DEK, context=ctx())
    assert provider._session is not None
    provider._session.close()  # what a reset HSM connection does to a session

    with pytest.raises(ProviderUnavailable):
        provider.unwrap(used, blob, context=ctx())

    assert provider.unwrap(used, blob, context=ctx()) == DEK
