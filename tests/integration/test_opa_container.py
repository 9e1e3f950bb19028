"""The shipped policies on the official OPA image, asked through OPAServer.

Where a Docker engine answers, one OPA container per module gets the policies and data
pushed by ``OPAServer(url, bundle=...)`` and must give every answer of the shared case
table (``policies/cases/authz.json``), the table every embedded engine is held to.
Docker is optional, also in CI: where no engine answers, every test here skips with the
reason ``docker_available()`` gives; the HTTP contract itself is covered against a
scripted stand-in in ``tests/unit/authz/test_opa_http.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tenancy.authz import Action, OPAServer, PolicyBundle, build_input, default_policy_dir
from tenancy.authz.policytests import fixture_bundle
from tenancy.context import Principal, TenantContext
from tenancy.errors import DecisionUnavailable
from tests.support.postgres import docker_available

OPA_IMAGE = "openpolicyagent/opa:latest-static"
OPA_PORT = 8181
CASES: list[dict[str, Any]] = json.loads(
    (default_policy_dir() / "cases" / "authz.json").read_text(encoding="utf-8")
)["cases"]


@pytest.fixture(scope="module")
def opa_url() -> Iterator[str]:
    reason = docker_available()
    if reason is not None:
        # docker_available() words its reason for the PostgreSQL tests ("...ran against
        # the local PostgreSQL server instead"); keep its diagnosis, say what covers OPA.
        pytest.skip(
            reason.split("; ")[0] + "; the OPA HTTP contract is tested against a "
            "stub in tests/unit/authz/test_opa_http.py"
        )
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    container = (
        DockerContainer(OPA_IMAGE)
        .with_command(f"run --server --addr=0.0.0.0:{OPA_PORT}")
        .with_exposed_ports(OPA_PORT)
        .waiting_for(
            HttpWaitStrategy(OPA_PORT, "/health").for_status_code(200).with_startup_timeout(120)
        )
    )
    with container:
        host = container.get_container_host_ip()
        yield f"http://{host}:{container.get_exposed_port(OPA_PORT)}"


@pytest.fixture(scope="module")
def pushed(opa_url: str) -> Iterator[tuple[OPAServer, PolicyBundle]]:
    """An OPAServer that pushed the shipped bundle; tests restore any data they change."""
    bundle = fixture_bundle()
    server = OPAServer(opa_url, bundle=bundle, timeout=5)
    try:
        yield server, bundle
    finally:
        server.close()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_case_table_on_the_opa_image(
    case: dict[str, Any], pushed: tuple[OPAServer, PolicyBundle]
) -> None:
    server, bundle = pushed
    overrides = [(tuple(path), value) for path, value in case.get("data") or []]
    saved = [(path, bundle.get(path)) for path, _ in overrides]
    try:
        for path, value in overrides:
            bundle.set(path, value)  # pushed to OPA before set() returns
        assert server.revision == bundle.revision
        decision = server.decide(case["input"])
    finally:
        for path, value in reversed(saved):
            bundle.set(path, value)

    assert (decision.allow, sorted(decision.reasons)) == (case["allow"], sorted(case["reasons"]))
    assert decision.engine == "opa-server"


def test_undefined_rule_on_the_opa_image_is_unavailable(
    opa_url: str, pushed: tuple[OPAServer, PolicyBundle]
) -> None:
    # The real server's answer for a rule that does not exist is 200 with no result.
    server = OPAServer(opa_url, rule="no_such_rule", timeout=5)
    try:
        with pytest.raises(DecisionUnavailable):
            server.decide(CASES[0]["input"])
    finally:
        server.close()


def test_request_derived_text_is_only_input_on_the_opa_image(
    pushed: tuple[OPAServer, PolicyBundle],
) -> None:
    server, _ = pushed
    principal = Principal(
        issuer="https://idp/?x=#",
        tenant_id="t-acme",
        subject="alice/../../v1/policies %2e%2e?x=1#y ☃",
    )
    ctx = TenantContext(
        tenant_id="t-acme",
        tenant_slug="acme",
        region="eu-central-1",
        principal=principal,
        request_id="req-1",
    )
    document = build_input(
        ctx,
        service="worklogs/../system",
        action=Action.http("GET", "/../../v1/data/system/main?x=1#z"),
        now=1795000000,
        tenant_status="active",
    )

    decision = server.decide(document)

    assert (decision.allow, decision.reasons) == (False, ("action_not_declared",))


def test_opa_loads_and_verifies_a_built_bundle(tmp_path: Any) -> None:
    # The archive `tenancy authz bundle build` writes, signed, loaded by the real OPA
    # (`--bundle` with `--verification-key`): OPA checks the signature format and the file
    # hashes itself, then OPAServer(bundle_name=...) decides every case and records the
    # manifest's revision.
    reason = docker_available()
    if reason is not None:
        pytest.skip(reason.split("; ")[0] + "; bundles are read back in test_archive.py")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    from tenancy.authz.archive import write_bundle

    key = ec.generate_private_key(ec.SECP256R1())
    signing = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "bundle.tar.gz").write_bytes(
        write_bundle(fixture_bundle(), revision="container-1", signing_key=signing)
    )
    (tmp_path / "public.pem").write_bytes(public)
    container = (
        DockerContainer(OPA_IMAGE)
        .with_volume_mapping(str(tmp_path), "/b", "ro")
        .with_command(
            f"run --server --addr=0.0.0.0:{OPA_PORT} --bundle /b/bundle.tar.gz "
            "--verification-key /b/public.pem --verification-key-id tenancy "
            "--signing-alg ES256"
        )
        .with_exposed_ports(OPA_PORT)
        .waiting_for(
            HttpWaitStrategy(OPA_PORT, "/health?bundles")
            .for_status_code(200)
            .with_startup_timeout(120)
        )
    )
    with container:
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(OPA_PORT)}"
        server = OPAServer(url, bundle_name="/b/bundle.tar.gz", timeout=5)
        try:
            for case in CASES:
                if case.get("data"):
                    continue  # the bundle is fixed: no data overrides
                decision = server.decide(case["input"])
                assert decision.allow == case["allow"], case["name"]
                assert decision.bundle == "container-1"
        finally:
            server.close()
