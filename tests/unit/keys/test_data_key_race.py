"""Two writers creating a tenant's first data key at once (threads, or two processes on one
database): the loser's INSERT fails on the key and it takes the winner's key; nothing
answers an error, and one key exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tenancy.keys import DataKeyCache, LocalKeyProvider, RootKey, TenantKeys
from tenancy.keys.envelope import Binding
from tenancy.tenants import Tenant
from tests.unit.keys.conftest import raw_rows


def service(engine: Engine, tmp_path: Path) -> TenantKeys:
    root = RootKey.load_or_create(tmp_path / "root.key")
    keys = TenantKeys(
        engine, [LocalKeyProvider(tmp_path / "keks.json", root=root)], cache=DataKeyCache(ttl=60)
    )
    keys.create_schema()
    return keys


def test_the_writer_that_loses_the_race_uses_the_winners_key(
    engine: Engine, tmp_path: Path, acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner, loser = service(engine, tmp_path), service(engine, tmp_path)
    winner.provision(acme.id)
    binding = Binding(acme.id, "worklogs", "comment", "row-1")
    counted = loser.store.next_version
    calls = {"n": 0}

    def counted_before_the_winner_committed(conn: Any, tenant_id: str, purpose: str) -> int:
        calls["n"] += 1
        version = counted(conn, tenant_id, purpose)
        if calls["n"] == 1:  # both writers counted before either committed
            winner.encrypt(b"first", binding)
        return version

    monkeypatch.setattr(loser.store, "next_version", counted_before_the_winner_committed)
    sealed = loser.encrypt(b"second", binding)
    assert winner.decrypt(sealed, binding) == b"second"
    assert [(r.purpose, r.version) for r in raw_rows(engine, "tenancy_data_keys")] == [
        ("default", 1)
    ]
