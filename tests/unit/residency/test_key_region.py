"""A CMK tenant's key-encryption key must live in the tenant's home region."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from tenancy.errors import ConfigurationError, WrongRegion
from tenancy.events import MemorySink
from tenancy.keys import KeyRef, LocalKeyProvider, RootKey
from tenancy.keys.aws import AwsKmsKeyProvider
from tenancy.keys.provider import KeyInfo
from tenancy.residency import KeyResidency, ResidencyViolation, check_key_region, key_region
from tests.unit.residency.conftest import EU, EU_TENANT, US


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AWS KMS as moto emulates it, in this process (no network, no account)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield


def cmk_in(region: str) -> KeyInfo:
    provider = AwsKmsKeyProvider.from_region(region)
    return provider.describe(provider.create_key(tenant_id=EU_TENANT))


def hsm_key() -> KeyInfo:
    return KeyInfo(
        KeyRef("pkcs11", "tenant-kek", "1"),
        enabled=True,
        managed_by="customer",
        location="pkcs11:eu-hsm",
    )


def test_cmk_in_aws_kms_us_east_1_for_an_eu_tenant_is_refused_and_audited(kms: None) -> None:
    events = MemorySink()
    key = cmk_in(US)
    assert key.location == f"aws-kms:{US}"
    with pytest.raises(ResidencyViolation) as refused:
        check_key_region(key, EU, tenant_id=EU_TENANT, events=events)
    assert isinstance(refused.value, WrongRegion)
    assert (refused.value.home_region, refused.value.region) == (EU, US)
    event = events.events[-1]
    assert (event.action, event.tenant_id) == ("residency.refused", EU_TENANT)
    assert event.details["home_region"] == EU and event.details["region"] == US
    assert event.details["attempted"] == "key"
    assert event.details["key_id"] == key.ref.key_id


def test_cmk_in_the_tenants_region_is_accepted(kms: None) -> None:
    events = MemorySink()
    assert check_key_region(cmk_in(EU), EU, tenant_id=EU_TENANT, events=events) == EU
    assert events.events == []


def test_hsm_key_takes_the_region_configured_for_the_hsm() -> None:
    assert check_key_region(hsm_key(), EU, configured_region=EU) == EU
    with pytest.raises(ResidencyViolation):
        check_key_region(hsm_key(), EU, configured_region=US, events=MemorySink())


def test_key_whose_region_is_unknown_is_refused() -> None:
    events = MemorySink()
    with pytest.raises(ResidencyViolation):
        check_key_region(hsm_key(), EU, tenant_id=EU_TENANT, events=events)
    assert events.events[-1].reason == "the region of the tenant's key is not known"


@pytest.mark.parametrize("location", ["aws-kms:", "aws-kms:Mars", "aws-kms:eu-central-1:x"])
def test_malformed_kms_location_is_not_a_region(location: str) -> None:
    info = KeyInfo(KeyRef("aws-kms", "k"), enabled=True, location=location)
    assert key_region(info) is None


def test_kms_location_contradicting_the_configured_region_is_refused() -> None:
    info = KeyInfo(KeyRef("aws-kms", "k"), enabled=True, location=f"aws-kms:{EU}")
    assert key_region(info, configured_region=US) is None
    with pytest.raises(ResidencyViolation):
        check_key_region(info, EU, configured_region=US, events=MemorySink())


def test_key_residency_checks_a_local_key_file_by_its_configured_region(tmp_path: Path) -> None:
    provider = LocalKeyProvider(tmp_path / "keys", root=RootKey(bytes(32)))
    ref = provider.create_key(tenant_id=EU_TENANT)
    homes = {EU_TENANT: EU}
    events = MemorySink()
    assert (
        KeyResidency(homes.__getitem__, locations={"local": EU}, events=events).check_ref(
            EU_TENANT, provider, ref
        )
        == EU
    )
    with pytest.raises(ResidencyViolation):
        KeyResidency(homes.__getitem__, locations={"local": US}, events=events).check_ref(
            EU_TENANT, provider, ref
        )
    assert events.actions() == ["residency.refused"]


def test_key_residency_refuses_a_malformed_configured_region() -> None:
    with pytest.raises(ConfigurationError):
        KeyResidency(lambda tenant_id: EU, locations={"pkcs11:eu-hsm": "Frankfurt"})
