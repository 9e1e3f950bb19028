"""TenantKeys with KeyResidency: a CMK of another region is never adopted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws
from sqlalchemy import Engine

from tenancy.events import MemorySink
from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.aws import AwsKmsKeyProvider
from tenancy.residency import KeyResidency, ResidencyViolation
from tests.unit.residency.conftest import EU, EU_TENANT, US


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield


def test_provisioning_a_us_cmk_for_an_eu_tenant_is_refused_and_not_recorded(
    kms: None, engine: Engine, tmp_path: Path
) -> None:
    events = MemorySink()
    us_kms = AwsKmsKeyProvider.from_region(US)
    local = LocalKeyProvider(tmp_path / "keys", root=RootKey(bytes(32)))
    keys = TenantKeys(
        engine,
        [local, us_kms],
        events=events,
        residency=KeyResidency({EU_TENANT: EU}.__getitem__, locations={"local": EU}, events=events),
    )
    keys.create_schema()
    keys.provision(EU_TENANT)  # a platform key in the local file, configured in EU
    cmk = us_kms.create_key(tenant_id=EU_TENANT)
    with pytest.raises(ResidencyViolation):
        keys.provision(EU_TENANT, key=cmk)
    with pytest.raises(ResidencyViolation):
        keys.use_provider(EU_TENANT, cmk)
    assert keys.status(EU_TENANT) is not None
    assert events.actions().count("residency.refused") == 2
