"""probe.toml: every mistake is a ProbeConfigError naming the key, before any request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tenancy.testing.probe import GrantState, ProbeConfigError, load_config, parse_config

TOKEN = {"value": "a.b.c"}


def config(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "target": "http://127.0.0.1:8000",
        "identities": [
            {"name": "a1", "tenant": "acme", "token": TOKEN},
            {"name": "g1", "tenant": "globex", "token": TOKEN},
        ],
        "routes": {
            "GET /notes": {},
            "POST /notes": {"body": {"text": "{canary}"}, "seed": True, "capture": {"id": "id"}},
        },
    }
    raw.update(changes)
    return raw


def test_a_good_config_parses() -> None:
    parsed = parse_config(
        config(support=[{"name": "s", "grant": "active", "tenant": "acme", "token": TOKEN}])
    )
    assert parsed.tenants == ("acme", "globex")
    assert [r.key for r in parsed.routes] == ["GET /notes", "POST /notes"]
    assert parsed.routes[1].captures[0].param == "id"
    assert parsed.staff[0].grant is GrantState.ACTIVE


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown key"),
        ({"identities": [{"name": "a1", "tenant": "acme", "token": TOKEN}]}, "two tenants"),
        (
            {
                "identities": [
                    {"name": "a1", "tenant": "acme", "token": TOKEN},
                    {"name": "a1", "tenant": "globex", "token": TOKEN},
                ]
            },
            "used twice",
        ),
        ({"identities": [{"name": "a 1", "tenant": "acme", "token": TOKEN}]}, "name must"),
        ({"identities": [{"name": "a1", "token": TOKEN}]}, "tenant is required"),
        (
            {
                "identities": [
                    {"name": "a1", "tenant": "acme", "token": {"file": "x", "value": "y"}}
                ]
            },
            "exactly one",
        ),
        (
            {"identities": [{"name": "a1", "tenant": "acme", "token": {"command": []}}]},
            "not a usable token source",
        ),
        ({"routes": {"FETCH /x": {}}}, "must look like"),
        ({"routes": {"GET /x": {"capture": {"id": "id"}}}}, "only seed routes"),
        (
            {
                "routes": {
                    "POST /x": {"seed": True, "capture": {"id": {"from": "id", "pattern": "("}}}
                }
            },
            "bad pattern",
        ),
        (
            {
                "routes": {
                    "POST /x": {"seed": True, "capture": {"id": {"from": "id", "pattern": "x"}}}
                }
            },
            "needs a group",
        ),
        ({"routes": {}}, "give the routes"),
        ({"timeout": 0}, "timeout"),
        ({"concurrency": 1000}, "concurrency"),
        ({"support": [{"name": "s", "grant": "forever", "token": TOKEN}]}, "grant must be"),
        ({"support": [{"name": "s", "grant": "active", "token": TOKEN}]}, "tenant of the grant"),
        (
            {"support": [{"name": "s", "grant": "none", "tenant": "acme", "token": TOKEN}]},
            "tenant of the grant",
        ),
        (
            {"support": [{"name": "s", "grant": "active", "tenant": "initech", "token": TOKEN}]},
            "one of the identities' tenants",
        ),
        ({"issuer": {"password": "x"}}, "issuer"),
    ],
)
def test_mistakes_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ProbeConfigError, match=message):
        parse_config(config(**changes))


def test_paths_are_relative_to_the_file_and_expand_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written in the file: the file's folder. Beginning with a variable: the working
    # directory's (tests/unit/testing/test_probe_paths.py has the whole rule).
    monkeypatch.setenv("PROBE_DIR", "tokens")
    (tmp_path / "probe.toml").write_text(
        'openapi = "openapi.json"\n[issuer]\ndev_data_dir = "${PROBE_DIR}/issuer"\n'
        '[[identities]]\nname = "a"\ntenant = "acme"\ntoken = { file = "x/$PROBE_DIR/a.jwt" }\n'
        '[[identities]]\nname = "g"\ntenant = "globex"\n'
        'token = { command = ["echo", "${PROBE_DIR}"] }\n'
    )
    parsed = load_config(tmp_path / "probe.toml")
    assert parsed.users[0].token.file == tmp_path / "x" / "tokens" / "a.jwt"
    assert parsed.users[1].token.command == ("echo", "tokens")
    assert parsed.issuer is not None and parsed.issuer.dev_data_dir == Path("tokens/issuer")
    assert parsed.openapi == str(tmp_path / "openapi.json")


def test_unreadable_or_invalid_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProbeConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("target = [")
    with pytest.raises(ProbeConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


@pytest.mark.parametrize("content", ["target = [", 'target = "x"\n'])
def test_the_cli_exits_2_with_one_line_on_a_bad_config(tmp_path: Path, content: str) -> None:
    (tmp_path / "probe.toml").write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "tenancy.cli", "probe", "--config", str(tmp_path / "probe.toml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("tenancy: error: ")
