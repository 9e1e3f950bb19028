"""The CLI: tenants and keys; errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenancy.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def two_tenants(capsys: pytest.CaptureFixture[str], data_dir: str) -> None:
    """acme and globex, each with its platform key, as `tenancy tenants create` makes them."""
    for slug in ("acme", "globex"):
        assert run(capsys, "tenants", "create", slug, "--data-dir", data_dir)[0] == 0


def test_tenants_lifecycle_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    code, out, _ = run(capsys, "tenants", "create", "acme", "--name", "Acme", "--data-dir", d)
    assert code == 0 and out.startswith("acme\t")
    assert (
        run(capsys, "tenants", "suspend", "acme", "--reason", "unpaid", "--data-dir", d)[1]
        == "acme\tsuspended\n"
    )
    assert (
        run(capsys, "tenants", "activate", "acme", "--reason", "paid", "--data-dir", d)[1]
        == "acme\tactive\n"
    )
    listing = run(capsys, "tenants", "list", "--data-dir", d)[1]
    assert listing.split("\t")[0] == "acme" and "\tactive\t" in listing


@pytest.mark.parametrize(
    "argv",
    [
        ("tenants", "create", "Not_A_Slug"),
        ("tenants", "suspend", "nosuch", "--reason", "r"),
        ("keys", "status", "--tenant", "nosuch"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, out, err = run(capsys, *argv, "--data-dir", str(tmp_path))
    assert code == 1
    assert out == ""
    assert err.startswith("tenancy: error: ") and err.count("\n") == 1


def test_duplicate_create_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    run(capsys, "tenants", "create", "acme", "--data-dir", d)
    assert run(capsys, "tenants", "create", "acme", "--data-dir", d)[0] == 1
    assert len(run(capsys, "tenants", "list", "--data-dir", d)[1].splitlines()) == 1


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


def test_keys_commands_show_rotate_revoke_and_shred(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    two_tenants(capsys, d)
    code, out, _ = run(capsys, "keys", "status", "--tenant", "acme", "--data-dir", d)
    assert code == 0 and "\tkek\tlocal:" in out and "\tenabled\t" in out
    assert run(capsys, "keys", "rotate", "--tenant", "acme", "--data-dir", d)[0] == 0
    # The replaced version is destroyed at once (no grace period configured).
    assert "versions=2\t" in run(capsys, "keys", "status", "--tenant", "acme", "--data-dir", d)[1]
    code, out, _ = run(capsys, "keys", "use-cmk", "--tenant", "acme", "--data-dir", d)
    assert code == 0 and "customer-local:" in out
    status = run(capsys, "keys", "status", "--tenant", "acme", "--data-dir", d)[1]
    assert "versions=3\t" in status and "\tcmk\tcustomer-local:" in status
    assert run(capsys, "keys", "revoke-test", "--tenant", "acme", "--data-dir", d)[0] == 0
    status = run(capsys, "keys", "status", "--tenant", "acme", "--data-dir", d)[1]
    assert "\tcmk\t" in status and "\tcustomer\tDISABLED" in status
    code, _, err = run(
        capsys, "keys", "shred", "--tenant", "acme", "--confirm", "globex", "--data-dir", d
    )
    assert code == 1 and "irreversible" in err
    assert (
        run(capsys, "keys", "shred", "--tenant", "acme", "--confirm", "acme", "--data-dir", d)[0]
        == 0
    )
    assert "\tdestroyed\t" in run(capsys, "keys", "status", "--tenant", "acme", "--data-dir", d)[1]
    # globex is untouched
    assert (
        "\tactive\tenabled"
        in run(capsys, "keys", "status", "--tenant", "globex", "--data-dir", d)[1]
    )


def test_offboarding_shreds_the_tenants_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    two_tenants(capsys, d)
    code, out, _ = run(
        capsys, "tenants", "offboard", "globex", "--reason", "ended", "--data-dir", d
    )
    assert code == 0 and "keys destroyed" in out
    assert (
        "\tdestroyed\t" in run(capsys, "keys", "status", "--tenant", "globex", "--data-dir", d)[1]
    )


def test_offboarding_a_tenant_whose_keys_were_already_shredded_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    two_tenants(capsys, d)
    shred = ("keys", "shred", "--tenant", "globex", "--confirm", "globex", "--data-dir", d)
    assert run(capsys, *shred)[0] == 0
    code, out, err = run(
        capsys, "tenants", "offboard", "globex", "--reason", "ended", "--data-dir", d
    )
    assert code == 0, err
    assert "\toffboarded" in out and "keys already destroyed" in out


def test_tenant_created_with_a_customer_managed_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    code, out, _ = run(
        capsys, "tenants", "create", "initech", "--key-provider", "customer-local", "--data-dir", d
    )
    assert code == 0 and "\tkey\tcustomer-local:" in out
    status = run(capsys, "keys", "status", "--tenant", "initech", "--data-dir", d)[1]
    assert "\tcustomer\tactive\tenabled" in status


def test_tenant_create_provisions_a_key_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    code, out, _ = run(capsys, "tenants", "create", "initech", "--data-dir", d)
    assert code == 0 and "\tkey\tlocal:" in out and "\tplatform" in out
    assert (
        "\tplatform\tactive\tenabled"
        in run(capsys, "keys", "status", "--tenant", "initech", "--data-dir", d)[1]
    )
    assert run(capsys, "tenants", "create", "hooli", "--no-key", "--data-dir", d)[0] == 0
    code, out, _ = run(capsys, "keys", "status", "--tenant", "hooli", "--data-dir", d)
    assert code == 1 and "no key" in out
    code, out, _ = run(
        capsys, "keys", "provision", "--tenant", "hooli", "--cache-ttl", "30", "--data-dir", d
    )
    assert code == 0 and "\tkey\tlocal:" in out
    assert "cache-ttl=30s" in run(capsys, "keys", "status", "--tenant", "hooli", "--data-dir", d)[1]
    # On a tenant that already has its keys, provision only applies what it is given.
    assert (
        run(
            capsys, "keys", "provision", "--tenant", "initech", "--cache-ttl", "10", "--data-dir", d
        )[0]
        == 0
    )
    assert (
        "cache-ttl=10s" in run(capsys, "keys", "status", "--tenant", "initech", "--data-dir", d)[1]
    )
    # Contradictory flags are refused before anything is created.
    code, _, err = run(
        capsys,
        "tenants",
        "create",
        "contradiction",
        "--no-key",
        "--key-provider",
        "customer-local",
        "--data-dir",
        d,
    )
    assert code == 1 and "exclude each other" in err
    assert "contradiction" not in run(capsys, "tenants", "list", "--data-dir", d)[1]
