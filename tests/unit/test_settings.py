"""Settings come from the environment once, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenancy.errors import InvalidTenantField
from tenancy.settings import Settings


def test_defaults_put_everything_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=str(tmp_path))
    assert settings.data_dir == tmp_path.resolve()
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'tenancy.db'}"
    assert settings.uses_sqlite
    assert (settings.region, settings.audience) == ("eu-central-1", "edge")


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "TENANCY_DATA_DIR": str(tmp_path),
        "TENANCY_REGION": "us-east-1",
        "TENANCY_DATABASE_URL": "postgresql+psycopg://app@db/tenancy",
    }
    settings = Settings.from_env(env)
    assert settings.region == "us-east-1"
    assert not settings.uses_sqlite


def test_database_url_is_honoured_as_a_fallback(tmp_path: Path) -> None:
    url = "postgresql+psycopg://tenancy_app@db/tenancy"
    assert Settings.from_env({"DATABASE_URL": url}, data_dir=str(tmp_path)).database_url == url
    assert (
        Settings.from_env(
            {"DATABASE_URL": url, "TENANCY_DATABASE_URL": "sqlite://"}, data_dir=str(tmp_path)
        ).database_url
        == "sqlite://"
    )


@pytest.mark.parametrize("region", ["Mars", "eu_central_1", ""])
def test_invalid_region_is_refused_at_start(region: str) -> None:
    with pytest.raises(InvalidTenantField):
        Settings.from_env({"TENANCY_REGION": region})


def test_the_replay_guard_is_named_by_the_environment(tmp_path: Path) -> None:
    from tenancy.deployment import replay_guard_for
    from tenancy.errors import ConfigurationError
    from tenancy.propagation import MemoryReplayGuard, RedisReplayGuard, TableReplayGuard

    def settings(value: str) -> Settings:
        return Settings.from_env({"TENANCY_DATA_DIR": str(tmp_path), "TENANCY_REPLAY_GUARD": value})

    assert isinstance(replay_guard_for(settings("")), MemoryReplayGuard)
    table = replay_guard_for(settings("database"))
    assert isinstance(table, TableReplayGuard)
    assert table.first_use("j-1", expires_at=2e9, now=1e9)  # its table exists (SQLite)
    assert not table.first_use("j-1", expires_at=2e9, now=1e9)
    assert isinstance(replay_guard_for(settings("redis://127.0.0.1:6379/0")), RedisReplayGuard)
    with pytest.raises(ConfigurationError, match="TENANCY_REPLAY_GUARD"):
        settings("memcached://x")
