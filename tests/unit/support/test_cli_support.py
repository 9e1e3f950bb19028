"""``tenancy support``: request, approve, deny, revoke, list and close-ticket from the CLI;
refusals are one line on stderr, exit 1, and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenancy.cli import main
from tenancy.deployment import open_registry
from tenancy.settings import Settings

READ = "worklogs:read"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("TENANCY_DATABASE_URL", "DATABASE_URL", "TENANCY_DATA_DIR", "TENANCY_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env({}, data_dir=tmp_path)
    registry = open_registry(settings)
    for slug in ("acme", "globex"):
        registry.provision(slug, region=settings.region)
    return str(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, ""), err
    return out


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("tenancy: error: ") and err.count("\n") == 1
    return err


def request(
    capsys: pytest.CaptureFixture[str], d: str, ticket: str = "T-1", tenant: str = "acme"
) -> str:
    out = ok(
        capsys,
        "support",
        "request",
        "--tenant",
        tenant,
        "--as",
        "bob",
        "--ticket",
        ticket,
        "--justification",
        "customer cannot log time",
        "--scopes",
        READ,
        "--hours",
        "2",
        "--data-dir",
        d,
    )
    grant_id = out.strip()
    assert len(out.splitlines()) == 1 and len(grant_id) == 36
    return grant_id


def listing(
    capsys: pytest.CaptureFixture[str], d: str, tenant: str = "acme"
) -> dict[str, list[str]]:
    out = ok(capsys, "support", "list", "--tenant", tenant, "--data-dir", d)
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == 6 for row in rows)
    return {row[0]: row[1:] for row in rows}


def notices(d: str) -> list[str]:
    return [json.loads(p.read_text())["kind"] for p in (Path(d) / "outbox").glob("*.json")]


def test_the_full_flow(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    d = data_dir
    grant_id = request(capsys, d)
    status, engineer, ticket, scopes, ends = listing(capsys, d)[grant_id]
    assert (status, engineer, ticket, scopes, ends) == ("pending", "bob", "T-1", READ, "-")
    assert listing(capsys, d, "globex") == {}  # another tenant sees nothing

    out = ok(
        capsys,
        "support",
        "approve",
        grant_id,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--mfa",
        "--hours",
        "1",
        "--data-dir",
        d,
    )
    assert out.startswith(f"{grant_id}\tapproved\t{READ}\t")
    status, _, _, scopes, ends = listing(capsys, d)[grant_id]
    assert (status, scopes) == ("active", READ) and ends != "-"

    out = ok(capsys, "support", "close-ticket", "T-1", "--tenant", "acme", "--data-dir", d)
    assert out.startswith(f"{grant_id}\tticket closed\t")
    assert listing(capsys, d)[grant_id][0] == "active"  # the 1 h window ends first

    out = ok(
        capsys,
        "support",
        "revoke",
        grant_id,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--reason",
        "done",
        "--data-dir",
        d,
    )
    assert out.startswith(f"{grant_id}\trevoked\t")
    assert listing(capsys, d)[grant_id][0] == "revoked"
    refused(
        capsys,
        "support",
        "revoke",
        grant_id,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--reason",
        "again",
        "--data-dir",
        d,
    )

    denied_id = request(capsys, d, ticket="T-2")
    out = ok(
        capsys,
        "support",
        "deny",
        denied_id,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--mfa",
        "--reason",
        "not needed",
        "--data-dir",
        d,
    )
    assert out == f"{denied_id}\tdenied\n"
    assert listing(capsys, d)[denied_id][0] == "denied"

    assert sorted(notices(d)) == ["approved", "denied", "requested", "requested", "revoked"]


def test_approval_narrows_scopes_and_writes_need_consent(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = data_dir
    out = ok(
        capsys,
        "support",
        "request",
        "--tenant",
        "acme",
        "--as",
        "bob",
        "--ticket",
        "T-3",
        "--justification",
        "fix entries",
        "--scopes",
        "worklogs:read,worklogs:write",
        "--hours",
        "2",
        "--data-dir",
        d,
    )
    first = out.strip()
    out = ok(
        capsys,
        "support",
        "approve",
        first,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--mfa",
        "--data-dir",
        d,
    )
    assert out.split("\t")[2] == READ  # writes dropped by default

    out = ok(
        capsys,
        "support",
        "request",
        "--tenant",
        "acme",
        "--as",
        "bob",
        "--ticket",
        "T-3",
        "--justification",
        "fix entries",
        "--scopes",
        "worklogs:read worklogs:write",
        "--hours",
        "2",
        "--data-dir",
        d,
    )
    second = out.strip()
    out = ok(
        capsys,
        "support",
        "approve",
        second,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--mfa",
        "--allow-write",
        "--data-dir",
        d,
    )
    assert out.split("\t")[2] == "worklogs:read,worklogs:write"


@pytest.mark.parametrize(
    ("who", "message"),
    [
        (("--as", "bob", "--roles", "admin", "--mfa"), "own request"),  # self-approval
        (("--as", "alice", "--roles", "admin"), "MFA"),  # no MFA
        (("--as", "carol", "--roles", "member", "--mfa"), "only an admin"),  # not an admin
    ],
)
def test_approval_refusals_exit_1_and_change_nothing(
    who: tuple[str, ...], message: str, data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = data_dir
    grant_id = request(capsys, d)

    err = refused(capsys, "support", "approve", grant_id, "--tenant", "acme", *who, "--data-dir", d)

    assert message in err
    assert listing(capsys, d)[grant_id][0] == "pending"
    assert notices(d) == ["requested"]


def test_deny_and_revoke_refusals(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    d = data_dir
    grant_id = request(capsys, d)
    refused(
        capsys,
        "support",
        "deny",
        grant_id,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--reason",
        "no",
        "--data-dir",
        d,
    )  # no MFA
    refused(
        capsys,
        "support",
        "revoke",
        grant_id,
        "--tenant",
        "acme",
        "--as",
        "carol",
        "--roles",
        "member",
        "--reason",
        "no",
        "--data-dir",
        d,
    )  # not an admin
    refused(
        capsys,
        "support",
        "revoke",
        grant_id,
        "--tenant",
        "acme",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--reason",
        "no",
        "--data-dir",
        d,
    )  # not active
    assert listing(capsys, d)[grant_id][0] == "pending"


def test_another_tenants_admin_cannot_reach_the_grant(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = data_dir
    grant_id = request(capsys, d)
    err = refused(
        capsys,
        "support",
        "approve",
        grant_id,
        "--tenant",
        "globex",
        "--as",
        "alice",
        "--roles",
        "admin",
        "--mfa",
        "--data-dir",
        d,
    )
    assert "no such grant" in err
    assert listing(capsys, d)[grant_id][0] == "pending"


@pytest.mark.parametrize(
    "argv",
    [
        ("support", "list", "--tenant", "nosuch"),
        ("support", "close-ticket", "T-1", "--tenant", "nosuch"),
        (
            "support",
            "request",
            "--tenant",
            "acme",
            "--as",
            "bob",
            "--ticket",
            "T-1",
            "--justification",
            "j",
            "--scopes",
            READ,
            "--hours",
            "9",
        ),  # over 8 h
        (
            "support",
            "request",
            "--tenant",
            "acme",
            "--as",
            "bob",
            "--ticket",
            " ",
            "--justification",
            "j",
            "--scopes",
            READ,
            "--hours",
            "1",
        ),
        (
            "support",
            "approve",
            "00000000-0000-4000-8000-00000000dead",
            "--tenant",
            "acme",
            "--as",
            "alice",
            "--roles",
            "admin",
            "--mfa",
        ),
    ],
)
def test_other_errors_are_one_line(
    argv: tuple[str, ...], data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(capsys, *argv, "--data-dir", data_dir)
    assert listing(capsys, data_dir) == {}


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf", "two"])
def test_hours_must_be_a_positive_number(
    hours: str, data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "support",
                "request",
                "--tenant",
                "acme",
                "--as",
                "bob",
                "--ticket",
                "T-1",
                "--justification",
                "j",
                "--scopes",
                READ,
                "--hours",
                hours,
                "--data-dir",
                data_dir,
            ]
        )
    assert exit_.value.code == 2
    capsys.readouterr()
    assert listing(capsys, data_dir) == {}


def test_close_ticket_without_grants_prints_nothing(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        ok(capsys, "support", "close-ticket", "T-404", "--tenant", "acme", "--data-dir", data_dir)
        == ""
    )


def test_help_says_it_acts_as_the_named_people(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["support", "--help"])
    assert "acts AS the people named" in " ".join(capsys.readouterr().out.split())
