"""The examples' commands in the ``tenancy`` command line (entry point group
``tenancy.cli``): the same commands and flags as before they moved out of the library;
and the worklogs plugged into the library's export and erasure commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenancy.cli import main
from tenancy.identity import DEV_ISSUER, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.settings import Settings
from tenancy_examples.demo_state import prepare


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""  # no plugin warning: the examples load
    return out


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (("demo",), ("--host", "--port", "--backend-port", "--console-port", "--data-dir")),
        (("serve",), ("worklogs", "console", "--host", "--port", "--parent-pid", "--data-dir")),
        (
            ("dev-token",),
            ("--tenant", "--kind", "--trusted-device", "--sub", "--roles", "--scopes", "--mfa"),
        ),
        (("db", "migrate"), ("--url", "--app-role", "--sql")),
    ],
)
def test_the_examples_commands_keep_their_flags(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], flags: tuple[str, ...]
) -> None:
    text = help_of(capsys, *command)
    for flag in flags:
        assert flag in text, (command, flag)


def test_the_examples_commands_are_listed_beside_the_librarys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(capsys)
    for command in ("demo", "serve", "dev-token", "tenants", "keys", "support", "evidence"):
        assert command in text
    assert "migrate" in help_of(capsys, "db")


def test_dev_token_errors_are_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (("--tenant", "nosuch"), ()):
        code, out, err = run(capsys, "dev-token", *argv, "--sub", "a", "--data-dir", str(tmp_path))
        assert (code, out) == (1, "")
        assert err.startswith("tenancy: error: ") and err.count("\n") == 1


def test_dev_token_verifies_with_the_dev_issuer_jwks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    tenant_id = run(capsys, "tenants", "create", "acme", "--data-dir", d)[1].split("\t")[1]
    code, token, _ = run(
        capsys,
        "dev-token",
        "--tenant",
        "acme",
        "--sub",
        "alice",
        "--mfa",
        "--scopes",
        "worklogs:read",
        "--data-dir",
        d,
    )
    assert code == 0
    keys = JWKSKeySource.from_file(tmp_path / "dev-issuer-jwks.json", algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [trusted_issuer(DEV_ISSUER, audience="edge", keys=keys, algorithms=["EdDSA"])]
    )
    principal = verifier.verify(token.strip()).principal
    assert (principal.tenant_id, principal.subject, principal.mfa) == (tenant_id, "alice", True)
    assert principal.scopes == {"worklogs:read"}


def test_export_retention_and_audit_commands_on_the_worklogs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    prepare(Settings.from_env({}, data_dir=d))
    code, out, _ = run(
        capsys, "export", "create", "--tenant", "acme", "--format", "csv", "--data-dir", d
    )
    assert code == 0
    token = out.strip().splitlines()[-1]
    target = tmp_path / "acme.csv"
    assert (
        run(
            capsys,
            "export",
            "download",
            "--tenant",
            "acme",
            "--token",
            token,
            "--out",
            str(target),
            "--data-dir",
            d,
        )[0]
        == 0
    )
    assert target.read_text().startswith("id,author,description,minutes,day,comment,created_at")
    code, _, err = run(
        capsys,
        "export",
        "download",
        "--tenant",
        "globex",
        "--token",
        token,
        "--out",
        str(tmp_path / "x.csv"),
        "--data-dir",
        d,
    )
    assert code == 1 and err.startswith("tenancy: error: ")  # another tenant's link
    code, out, _ = run(capsys, "retention", "run", "--data-dir", d)
    assert code == 0 and "0 row(s) deleted" in out
    code, out, _ = run(capsys, "audit", "verify", "--tenant", "acme", "--data-dir", d)
    assert code == 0, out
    code, out, _ = run(capsys, "audit", "export", "--tenant", "acme", "--data-dir", d)
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert "export.created" in actions and "export.downloaded" in actions
    assert "retention.purged" in actions
    code, out, _ = run(
        capsys, "retention", "erase", "--tenant", "acme", "--confirm", "acme", "--data-dir", d
    )
    assert code == 0 and "acme\tworklogs\tdeleted=0" in out  # the worklogs' table is erased too
