"""infra/compose/compose.yaml: valid against the vendored Compose Specification schema,
secrets by file only, networks that keep PostgreSQL and worklogs apart, and commands and
settings the code really has (checked on both compose and the Kubernetes manifests)."""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tenancy.cli.parser import build_parser
from tests.infra.manifests import (
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    LAUNCHER,
    ROOT,
    Doc,
    compose_document,
    compose_secret_problems,
    containers_of,
    k8s_documents,
    known_settings,
    name_of,
    pod_templates,
)

COMPOSE = compose_document()
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
# Commands the manifests run that another part of issue 18 is still adding.
PENDING: dict[tuple[str, ...], str] = {}  # commands named before they exist: none now


def check_jsonschema(document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--schemafile",
            str(COMPOSE_SCHEMA),
            str(document),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_vendored_schema_is_the_recorded_one() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (COMPOSE_SCHEMA.parent / "README.md").read_text()


def test_compose_validates_against_the_compose_specification() -> None:
    done = check_jsonschema(COMPOSE_FILE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["edge"].update(replica=2),  # not `deploy.replicas`
        lambda c: c["services"]["worklogs"]["deploy"].update(replicas={"count": 2}),
        lambda c: c["services"]["postgres"].update(healthcheck={"test": 1}),
        lambda c: c.update(secret={}),
    ],
    ids=["unknown-service-key", "wrong-type", "bad-healthcheck", "unknown-top-level-key"],
)
def test_the_schema_check_rejects_a_broken_compose_file(mutate: Any, tmp_path: Path) -> None:
    broken = copy.deepcopy(COMPOSE)
    mutate(broken)
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert check_jsonschema(path).returncode == 1


def services() -> dict[str, Doc]:
    found: dict[str, Doc] = COMPOSE["services"]
    return found


def test_the_topology_is_all_there() -> None:
    names = set(services())
    assert {
        "postgres",
        "pgbouncer",
        "redis",
        "opa",
        "edge",
        "worklogs",
        "console",
        "haproxy",
    } <= names
    for name in ("edge", "worklogs"):
        assert services()[name]["deploy"]["replicas"] >= 2
    mounts = services()["postgres"]["volumes"]
    assert "../sql/roles.sql:/docker-entrypoint-initdb.d/10-roles.sql:ro" in mounts
    assert (
        "../pgbouncer/pgbouncer.ini:/etc/pgbouncer/pgbouncer.ini:ro"
        in (services()["pgbouncer"]["volumes"])
    )
    assert (
        "../haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"
        in (services()["haproxy"]["volumes"])
    )
    assert "../opa/config.yaml:/config/opa.yaml:ro" in services()["opa"]["volumes"]
    for relative in ("../sql/roles.sql", "../pgbouncer/pgbouncer.ini", "./initdb/20-tenancy.sh"):
        assert (COMPOSE_FILE.parent / relative).is_file()


def network_problems(compose: Doc) -> list[str]:
    """PostgreSQL shares a network with PgBouncer and the migration only; the services
    reach the database through PgBouncer; worklogs shares none with the console."""
    problems: list[str] = []
    networks = {
        name: set(spec.get("networks") or ["default"]) for name, spec in compose["services"].items()
    }
    near_db = {n for n, nets in networks.items() if nets & networks["postgres"]} - {"postgres"}
    if not near_db <= {"pgbouncer", "migrate"}:
        problems.append(f"PostgreSQL is reachable from {sorted(near_db)}")
    for service in ("edge", "worklogs", "console", "prepare"):
        env = compose["services"][service].get("environment") or {}
        url = str(env.get("TENANCY_DATABASE_URL", ""))
        if "@pgbouncer:6432/" not in url:
            problems.append(f"{service} does not connect through PgBouncer: {url!r}")
        if env.get("TENANCY_DATABASE_POOLER") != "transaction":
            problems.append(f"{service} does not say TENANCY_DATABASE_POOLER=transaction")
    if networks["worklogs"] & networks["console"]:
        shared = networks["worklogs"] & networks["console"]
        if shared - {"pool"}:
            problems.append(f"worklogs and the console share {sorted(shared - {'pool'})}")
    for port in compose["services"]["haproxy"].get("ports") or []:
        if str(port).endswith(":8002") and not str(port).startswith("127.0.0.1:"):
            problems.append(f"the console is published beyond loopback: {port}")
    for name, spec in compose["services"].items():
        if spec.get("ports") and name != "haproxy":
            problems.append(f"{name} publishes ports: only HAProxy does")
    return problems


def test_the_compose_networks_keep_the_database_and_worklogs_apart() -> None:
    assert network_problems(COMPOSE) == []


@pytest.mark.parametrize(
    ("mutate", "reported"),
    [
        (lambda c: c["services"]["edge"]["networks"].append("db"), "PostgreSQL is reachable"),
        (
            lambda c: c["services"]["worklogs"]["environment"].update(
                TENANCY_DATABASE_URL="postgresql+psycopg://tenancy_app@postgres:5432/tenancy"
            ),
            "worklogs does not connect through PgBouncer",
        ),
        (lambda c: c["services"]["console"]["networks"].append("backend"), "share ['backend']"),
        (
            lambda c: c["services"]["haproxy"]["ports"].append("8002:8002"),
            "beyond loopback",
        ),
        (lambda c: c["services"]["worklogs"].update(ports=["8001:8001"]), "worklogs publishes"),
    ],
    ids=["db-exposed", "pooler-bypassed", "console-meets-worklogs", "console-public", "port"],
)
def test_the_compose_network_check_reports_a_mutation(mutate: Any, reported: str) -> None:
    broken = copy.deepcopy(COMPOSE)
    mutate(broken)
    assert any(reported in p for p in network_problems(broken)), network_problems(broken)


def test_secrets_come_from_files_only() -> None:
    assert compose_secret_problems(COMPOSE) == []
    declared = set(COMPOSE["secrets"])
    used = {s for spec in services().values() for s in spec.get("secrets") or []}
    assert used == declared
    for name, spec in services().items():
        env = spec.get("environment") or {}
        for key, value in env.items():
            if key.endswith("_FILE"):
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in (spec.get("secrets") or []), f"{name}: {key} is not mounted"


@pytest.mark.parametrize(
    ("mutate", "reported"),
    [
        (
            lambda c: c["services"]["edge"]["environment"].update(PGPASSWORD="hunter2"),
            "PGPASSWORD is a secret given inline",
        ),
        (
            lambda c: c["secrets"].update(inline={"content": "hunter2"}),
            "compose secret inline is not a file",
        ),
        (
            lambda c: c["services"]["console"]["environment"].update(
                TENANCY_TICKETS_SECRET="9f" * 32
            ),
            "key-shaped",
        ),
        (
            lambda c: c["services"]["migrate"].update(
                command="tenancy db migrate --url postgresql://o:hunter2@postgres/t"
            ),
            "credentials in a URL",
        ),
    ],
    ids=["inline-env", "inline-secret", "hex-key", "url-credentials"],
)
def test_the_compose_secret_check_reports_an_inlined_secret(mutate: Any, reported: str) -> None:
    broken = copy.deepcopy(COMPOSE)
    mutate(broken)
    assert any(reported in p for p in compose_secret_problems(broken))


def test_hardened_containers() -> None:
    for name in ("edge", "worklogs", "console", "pgbouncer", "opa", "haproxy", "redis"):
        spec = services()[name]
        assert spec.get("read_only") is True, name
        assert spec.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in spec.get("security_opt", []), name


# -- commands and settings, on compose and Kubernetes alike ---------------------------------


def launcher() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("infra_launch", LAUNCHER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser: argparse.ArgumentParser = module.parser()
    return parser


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command our image runs, in compose and in Kubernetes."""
    found: list[tuple[str, list[str]]] = []
    for name, spec in services().items():
        if str(spec.get("image", "")).startswith("tenancy-examples"):
            command = spec["command"]
            found.append(
                (f"compose {name}", shlex.split(command) if isinstance(command, str) else command)
            )
    for workload, template in pod_templates(k8s_documents()):
        for container in containers_of(template["spec"]):
            if str(container["image"]).startswith("tenancy-examples"):
                argv = [*(container.get("command") or []), *(container.get("args") or [])]
                found.append((f"k8s {name_of(workload)}/{container['name']}", argv))
    return found


def _parses(argv: list[str]) -> str | None:
    """None if the command is one the image has, else why not."""
    if argv[:2] == ["python", "/app/launch.py"]:
        try:
            args = launcher().parse_args(argv[2:])
        except SystemExit:
            return "launch.py refuses these arguments"
        if args.service == "edge" and not args.worklogs_url:
            return "the edge needs --worklogs-url"
        return None
    if argv[:3] == ["python", "-m", "http.server"]:
        return None
    if argv[:1] == ["tenancy"]:
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            return "the tenancy command line refuses it"
        return None
    return "an unknown program"


COMMANDS = commands()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(
            argv,
            id=where,
            marks=[pytest.mark.xfail(reason=PENDING[tuple(argv[:4])], strict=False)]
            if tuple(argv[:4]) in PENDING
            else [],
        )
        for where, argv in COMMANDS
    ],
)
def test_every_command_is_one_the_image_has(argv: list[str]) -> None:
    assert _parses(argv) is None, argv


def test_a_misspelt_command_is_caught() -> None:
    assert _parses(["python", "/app/launch.py", "edges", "--port", "8000"]) is not None
    assert _parses(["python", "/app/launch.py", "edge", "--port", "8000"]) is not None
    assert _parses(["tenancy", "db", "migrat", "--url", "x"]) is not None


def settings_named() -> set[str]:
    names: set[str] = set()
    for spec in services().values():
        names |= {k.removesuffix("_FILE") for k in spec.get("environment") or {}}
    for doc in k8s_documents():
        if doc["kind"] == "ConfigMap" and name_of(doc) == "tenancy-settings":
            names |= set(doc["data"])
    for _, template in pod_templates(k8s_documents()):
        for container in containers_of(template["spec"]):
            names |= {e["name"] for e in container.get("env") or []}
    return {n for n in names if n.startswith("TENANCY_")}


def test_every_setting_named_is_one_the_code_reads() -> None:
    unknown = settings_named() - known_settings()
    assert not unknown, f"settings nothing reads (a typo?): {sorted(unknown)}"
    assert "TENANCY_DATABASE_URLS" not in known_settings()  # the check can fail


def test_the_bundle_is_built_with_the_example_policy_data() -> None:
    path = services()["bundle"]["environment"]["TENANCY_POLICY_DATA"]
    inside = path.split("/site-packages/", 1)[1]
    assert (ROOT / "examples" / inside).is_file()
