"""Where a deployment's policies come from: the shipped ones, an OPA bundle archive
(``TENANCY_POLICY_BUNDLE``, signature checked with ``TENANCY_POLICY_BUNDLE_KEY``), or the
bundle an OPA server loads itself (``TENANCY_OPA_BUNDLE``); and ``tenancy authz bundle``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tenancy.authz import Action, EmbeddedRego, OPAServer, default_policy_dir
from tenancy.authz.archive import read_bundle, write_bundle
from tenancy.authz.policytests import fixture_bundle
from tenancy.cli import main
from tenancy.context import Principal, TenantContext
from tenancy.deployment import authorizer_for, policy_bundle
from tenancy.errors import ConfigurationError, PolicyBundleInvalid
from tenancy.identity import DEV_ISSUER
from tenancy.settings import Settings
from tests.support.opa_stub import OPAStub, Reply

pytestmark = pytest.mark.anyio
APP_DATA = default_policy_dir() / "cases" / "app.json"
TENANT = "11111111-1111-4111-8111-111111111111"
GET_WORKLOGS = Action.http("GET", "/worklogs")


def context() -> TenantContext:
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=TENANT,
        subject="alice",
        roles=frozenset({"member"}),
        scopes=frozenset({"worklogs:read"}),
    )
    return TenantContext(TENANT, "acme", "eu-central-1", principal, "rid")


def pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"TENANCY_DATA_DIR": str(tmp_path / "data"), **env})


def logged(tmp_path: Path, service: str) -> list[dict[str, object]]:
    path = tmp_path / "data" / "decision-log" / f"{service}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def stub() -> Iterator[OPAStub]:
    with OPAStub() as server:
        yield server


# -- an archive for the embedded engine ------------------------------------------------


async def test_the_embedded_engine_decides_with_the_archives_policies(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(write_bundle(fixture_bundle(), revision="build-42"))

    authorizer = authorizer_for(
        settings(tmp_path, TENANCY_POLICY_BUNDLE=str(archive)), "worklogs", policy_data=[APP_DATA]
    )
    decision = await authorizer.decide(context(), GET_WORKLOGS)
    authorizer.close()

    assert decision.allow and decision.bundle == "build-42"
    assert isinstance(authorizer.pdp, EmbeddedRego)
    # The application's data laid over equals what the archive holds: its revision stays.
    [record] = logged(tmp_path, "worklogs")
    assert record["bundle"] == "build-42" and record["engine"] == "embedded-rego"


def test_data_laid_over_an_archive_takes_a_new_revision(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(write_bundle(fixture_bundle(), revision="build-42"))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"tenancy": {"sensitive_scopes": ["worklogs:export"]}}))

    bundle = policy_bundle(
        settings(tmp_path, TENANCY_POLICY_BUNDLE=str(archive)), policy_data=[extra]
    )

    assert bundle.get(("tenancy", "sensitive_scopes")) == ["worklogs:export"]
    assert bundle.bundle_revision != "build-42"  # no longer what the archive says


def test_a_signed_archive_is_checked_before_anything_is_decided(tmp_path: Path) -> None:
    private, public = pem_pair()
    _, other = pem_pair()
    (tmp_path / "ours.pem").write_bytes(public)
    (tmp_path / "theirs.pem").write_bytes(other)
    signed = tmp_path / "signed.tar.gz"
    signed.write_bytes(write_bundle(fixture_bundle(), signing_key=private, issued_at=1))
    unsigned = tmp_path / "unsigned.tar.gz"
    unsigned.write_bytes(write_bundle(fixture_bundle()))

    def load(archive: Path, key: str) -> object:
        return policy_bundle(
            settings(
                tmp_path,
                TENANCY_POLICY_BUNDLE=str(archive),
                TENANCY_POLICY_BUNDLE_KEY=str(tmp_path / key),
            )
        )

    assert load(signed, "ours.pem") is not None
    with pytest.raises(PolicyBundleInvalid):
        load(signed, "theirs.pem")
    with pytest.raises(PolicyBundleInvalid):
        load(unsigned, "ours.pem")
    with pytest.raises(ConfigurationError, match="TENANCY_POLICY_BUNDLE_KEY"):
        load(signed, "missing.pem")
    # Nothing decided, nothing logged: the service refuses to start instead.
    assert not (tmp_path / "data" / "decision-log").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TENANCY_OPA_BUNDLE": "tenancy"}, "set TENANCY_OPA_URL"),
        (
            {
                "TENANCY_OPA_URL": "http://127.0.0.1:8181",
                "TENANCY_OPA_BUNDLE": "tenancy",
                "TENANCY_POLICY_BUNDLE": "b.tar.gz",
            },
            "keep one",
        ),
        ({"TENANCY_POLICY_BUNDLE_KEY": "k.pem"}, "set it"),
    ],
    ids=["opa-bundle-without-opa", "two-sources", "key-without-bundle"],
)
def test_contradictory_bundle_settings_stop_the_process(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings(tmp_path, **env)


# -- a bundle OPA loads itself ----------------------------------------------------------


async def test_with_opa_loading_the_bundle_nothing_is_pushed(tmp_path: Path, stub: OPAStub) -> None:
    answer = {
        "result": {"allow": True, "reasons": [], "scopes": ["worklogs:read"]},
        "provenance": {"bundles": {"tenancy": {"revision": "from-opa-7"}}},
    }
    stub.decide_with(Reply(200, answer))

    authorizer = authorizer_for(
        settings(tmp_path, TENANCY_OPA_URL=stub.url, TENANCY_OPA_BUNDLE="tenancy"),
        "worklogs",
        policy_data=[APP_DATA],
    )
    decision = await authorizer.decide(context(), GET_WORKLOGS)
    authorizer.close()

    assert isinstance(authorizer.pdp, OPAServer)
    assert stub.made("PUT") == []  # neither policies nor data: OPA's bundle is the truth
    assert decision.allow and decision.bundle == "from-opa-7"
    [record] = logged(tmp_path, "worklogs")
    assert record["bundle"] == "from-opa-7" and record["engine"] == "opa-server"


async def test_without_a_bundle_name_the_policies_are_pushed(tmp_path: Path, stub: OPAStub) -> None:
    authorizer = authorizer_for(
        settings(tmp_path, TENANCY_OPA_URL=stub.url), "worklogs", policy_data=[APP_DATA]
    )
    authorizer.close()
    assert stub.made("PUT", "/v1/policies/") != []


# -- the command line --------------------------------------------------------------------


def test_build_then_inspect_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANCY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TENANCY_POLICY_DATA", raising=False)
    private, public = pem_pair()
    (tmp_path / "signing.pem").write_bytes(private)
    (tmp_path / "public.pem").write_bytes(public)
    out = tmp_path / "out" / "bundle.tar.gz"

    built = main(
        [
            "authz",
            "bundle",
            "build",
            "--out",
            str(out),
            "--data",
            str(APP_DATA),
            "--revision",
            "v1",
            "--signing-key",
            str(tmp_path / "signing.pem"),
        ]
    )
    said = capsys.readouterr().out

    assert built == 0 and "revision v1" in said and "signed" in said
    assert read_bundle(out, verification_key=public).bundle_revision == "v1"
    assert [p.name for p in out.parent.iterdir()] == ["bundle.tar.gz"]  # no temporary left
    assert oct(out.stat().st_mode & 0o777) == "0o644"

    assert (
        main(
            [
                "authz",
                "bundle",
                "inspect",
                str(out),
                "--verification-key",
                str(tmp_path / "public.pem"),
            ]
        )
        == 0
    )
    listing = capsys.readouterr().out.splitlines()
    assert "revision\tv1" in listing and "signature\tverified" in listing
    assert any(line.startswith("module\t") for line in listing)


def test_a_bundle_that_fails_its_check_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, public = pem_pair()
    (tmp_path / "public.pem").write_bytes(public)
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(write_bundle(fixture_bundle()))

    code = main(
        [
            "authz",
            "bundle",
            "inspect",
            str(archive),
            "--verification-key",
            str(tmp_path / "public.pem"),
        ]
    )
    err = capsys.readouterr().err

    assert code == 1 and err.startswith("tenancy: error: ") and err.count("\n") == 1
    missing = main(
        [
            "authz",
            "bundle",
            "build",
            "--out",
            str(tmp_path / "x.tar.gz"),
            "--signing-key",
            str(tmp_path / "nope.pem"),
        ]
    )
    assert missing == 1 and "--signing-key" in capsys.readouterr().err
    assert not (tmp_path / "x.tar.gz").exists()
