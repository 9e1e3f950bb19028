"""Which folder a probe.toml path is relative to: the file's, or the working directory.

Issue 16: with ``export TENANCY_DATA_DIR=.tenancy`` (relative), ``tenancy probe
--config examples/probe/demo.toml`` looked for the issuer key in
``examples/probe/.tenancy/`` and stopped with "cannot load the private key ...".
A path written in the file is the file's; a path that comes from the environment is the
working directory's, like every other path the user typed in that shell.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tenancy.identity.dev import KEY_FILE, DevIssuer
from tenancy.testing.probe import ProbeConfigError, load_config
from tenancy.testing.probe.tokens import Resigner

ROOT = Path(__file__).resolve().parents[3]
DEMO_CONFIG = ROOT / "examples" / "probe" / "demo.toml"


def test_a_relative_data_dir_from_the_environment_is_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kit's sequence (docs/tutorials/isolation-kit.md), from a checkout: the demo's
    # data in ./.tenancy, the shipped configuration two folders down.
    DevIssuer.load_or_create(tmp_path / ".tenancy")
    (tmp_path / "examples" / "probe").mkdir(parents=True)
    shutil.copy(DEMO_CONFIG, tmp_path / "examples" / "probe" / "demo.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANCY_DATA_DIR", ".tenancy")

    config = load_config("examples/probe/demo.toml")
    assert config.issuer is not None

    # Raised "issuer: cannot load the private key examples/probe/.tenancy/...".
    Resigner(config.issuer)
    assert config.issuer.dev_data_dir == Path(".tenancy")


def test_paths_written_in_the_file_stay_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "probe.toml").write_text(
        'openapi = "openapi.json"\n[issuer]\nprivate_key = "keys/issuer.pem"\n'
        '[[identities]]\nname = "a"\ntenant = "acme"\ntoken = { file = "tokens/$WHO.jwt" }\n'
        '[[identities]]\nname = "g"\ntenant = "globex"\ntoken = { value = "a.b.c" }\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHO", "alice")

    config = load_config("conf/probe.toml")

    assert config.issuer is not None
    assert config.issuer.private_key == Path("conf/keys/issuer.pem")
    # A variable inside a written path fills in a name; the folder is still the file's.
    assert config.users[0].token.file == Path("conf/tokens/alice.jwt")
    assert config.openapi == str(Path("conf/openapi.json"))


def test_paths_that_begin_with_a_variable_are_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "probe.toml").write_text(
        'openapi = "${DOCS}/openapi.json"\n[issuer]\nprivate_key = "$KEYS/issuer.pem"\n'
        '[[identities]]\nname = "a"\ntenant = "acme"\ntoken = { file = "${TOKENS}/a.jwt" }\n'
        '[[identities]]\nname = "g"\ntenant = "globex"\ntoken = { file = "$ABS/g.jwt" }\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCS", "docs")
    monkeypatch.setenv("KEYS", "secrets")
    monkeypatch.setenv("TOKENS", "out/tokens")
    monkeypatch.setenv("ABS", str(tmp_path / "abs"))

    config = load_config("conf/probe.toml")

    assert config.issuer is not None and config.issuer.private_key == Path("secrets/issuer.pem")
    assert config.users[0].token.file == Path("out/tokens/a.jwt")
    assert config.users[1].token.file == tmp_path / "abs" / "g.jwt"
    assert config.openapi == str(Path("docs/openapi.json"))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('[issuer]\ndev_data_dir = "${PROBE_UNSET_DIR}"\n', "issuer.dev_data_dir"),
        ('[issuer]\nprivate_key = "$PROBE_UNSET_DIR/k.pem"\n', "issuer.private_key"),
        ('openapi = "${PROBE_UNSET_DIR}/o.json"\n', "openapi"),
    ],
)
def test_an_unset_variable_in_a_path_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, key: str
) -> None:
    # Left unexpanded, "${X}" became a folder of that name and the error named a file
    # nobody meant.
    monkeypatch.delenv("PROBE_UNSET_DIR", raising=False)
    (tmp_path / "probe.toml").write_text(
        line + '[[identities]]\nname = "a"\ntenant = "acme"\ntoken = { value = "a.b.c" }\n'
        '[[identities]]\nname = "g"\ntenant = "globex"\ntoken = { value = "a.b.c" }\n'
        '[routes."GET /x"]\n'
    )
    with pytest.raises(ProbeConfigError, match=rf"^{key}: \$PROBE_UNSET_DIR is not set"):
        load_config(tmp_path / "probe.toml")


def test_an_unset_variable_in_a_token_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROBE_UNSET_DIR", raising=False)
    (tmp_path / "probe.toml").write_text(
        '[[identities]]\nname = "a"\ntenant = "acme"\n'
        'token = { file = "${PROBE_UNSET_DIR}/a.jwt" }\n'
        '[[identities]]\nname = "g"\ntenant = "globex"\ntoken = { value = "a.b.c" }\n'
        '[routes."GET /x"]\n'
    )
    with pytest.raises(ProbeConfigError, match=r"identities\[0\]\.token: \$PROBE_UNSET_DIR"):
        load_config(tmp_path / "probe.toml")


def test_the_issuer_key_error_names_the_file_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "probe.toml").write_text(
        '[issuer]\ndev_data_dir = "${TENANCY_DATA_DIR}"\n'
        '[[identities]]\nname = "a"\ntenant = "acme"\ntoken = { value = "a.b.c" }\n'
        '[[identities]]\nname = "g"\ntenant = "globex"\ntoken = { value = "a.b.c" }\n'
        '[routes."GET /x"]\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANCY_DATA_DIR", ".tenancy")  # no key there
    config = load_config("sub/probe.toml")
    assert config.issuer is not None
    with pytest.raises(ProbeConfigError, match=f"private key {Path('.tenancy', KEY_FILE)}:"):
        Resigner(config.issuer)
