"""Policy data: the shipped bundle declares no application; an application's data is laid
over it (files or mappings, ``TENANCY_POLICY_DATA``), objects merged and values replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tenancy.authz import EmbeddedRego, PolicyBundle, default_policy_dir
from tenancy.authz.policytests import policy_cases
from tenancy.deployment import authorizer_for
from tenancy.errors import ConfigurationError
from tenancy.settings import Settings

APP_DATA = default_policy_dir() / "cases" / "app.json"
MEMBER_READS = next(c for c in policy_cases() if c["name"] == "member reads worklogs")


def test_shipped_data_declares_no_application() -> None:
    shipped = PolicyBundle.from_directory().data()["tenancy"]
    assert set(shipped) >= {"routes", "actions", "default_roles", "sensitive_scopes"}
    assert all(not table for table in shipped.values()), shipped


def test_a_route_the_application_did_not_declare_is_denied_and_declared_it_is_allowed() -> None:
    shipped = EmbeddedRego(PolicyBundle.from_directory()).decide(MEMBER_READS["input"])
    assert not shipped.allow
    assert shipped.reasons  # a refusal says why
    with_app = EmbeddedRego(PolicyBundle.from_directory(data=[APP_DATA]))
    assert with_app.decide(MEMBER_READS["input"]).allow


def test_layers_merge_objects_and_replace_other_values(tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_text(
        json.dumps(
            {
                "tenancy": {
                    "routes": {"notes": {"GET /notes": {"scopes": ["notes:read"]}}},
                    "sensitive_scopes": ["notes:export", "keys:manage"],
                }
            }
        )
    )
    second: dict[str, Any] = {
        "tenancy": {
            "routes": {"notes": {"POST /notes": {"scopes": ["notes:write"]}}},
            "sensitive_scopes": ["notes:export"],
        }
    }
    data = PolicyBundle.from_directory(data=[first, second]).data()["tenancy"]
    assert data["routes"]["notes"] == {
        "GET /notes": {"scopes": ["notes:read"]},
        "POST /notes": {"scopes": ["notes:write"]},
    }
    assert data["sensitive_scopes"] == ["notes:export"]  # the later list is the whole list
    assert data["actions"] == {}  # shipped tables the layers did not touch stay


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), ("{not json", "cannot be read"), ("[1, 2]", "JSON object")],
)
def test_a_bad_data_file_is_a_configuration_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "app.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        PolicyBundle.from_directory(data=[path])


def test_settings_read_policy_data_from_the_environment_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "extra.json").write_text("{}")
    env = {"TENANCY_DATA_DIR": str(tmp_path), "TENANCY_POLICY_DATA": f"{APP_DATA}:extra.json"}
    settings = Settings.from_env(env)
    assert settings.policy_data == (APP_DATA, tmp_path / "extra.json")
    assert Settings.from_env({"TENANCY_DATA_DIR": str(tmp_path)}).policy_data == ()


def test_a_deployment_decides_with_the_data_its_settings_name(tmp_path: Path) -> None:
    bare = Settings.from_env({"TENANCY_DATA_DIR": str(tmp_path)})
    configured = Settings.from_env(
        {"TENANCY_DATA_DIR": str(tmp_path), "TENANCY_POLICY_DATA": str(APP_DATA)}
    )
    request = MEMBER_READS["input"]
    assert not authorizer_for(bare, "worklogs").pdp.decide(request).allow
    assert authorizer_for(configured, "worklogs").pdp.decide(request).allow
    assert authorizer_for(bare, "worklogs", policy_data=[APP_DATA]).pdp.decide(request).allow
