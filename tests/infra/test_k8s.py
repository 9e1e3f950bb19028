"""infra/k8s: valid against the Kubernetes schemas, `restricted`, network-isolated, no
secret values, and consistent with the files compose uses. Every invariant is also shown
to fail on a manifest mutated in memory."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.infra.manifests import (
    ADMIN_INGRESS,
    K8S,
    KUBERNETES_VERSION,
    NAME_LABEL,
    OPA_CONFIG,
    PGBOUNCER_INI,
    ROOT,
    Doc,
    admitted,
    containers_of,
    k8s_documents,
    k8s_files,
    k8s_secret_problems,
    name_of,
    network_problems,
    pod_templates,
    restricted_problems,
    strip_file_notes,
)

DOCS = k8s_documents()


def ids(doc: Doc) -> str:
    return f"{doc['metadata']['annotations']['tests.infra/file']}:{doc['kind']}/{name_of(doc)}"


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and name_of(d) == name)


@pytest.mark.parametrize("doc", DOCS, ids=ids)
def test_each_object_validates_strictly_against_the_kubernetes_schema(doc: Doc) -> None:
    # strict: an unknown field (a typo) is an error; an unknown kind raises too.
    version = kubernetes_validate.validate(strip_file_notes(doc), KUBERNETES_VERSION, strict=True)
    assert version == KUBERNETES_VERSION.rsplit(".", 1)[0]


def test_the_validator_command_passes_every_file_offline() -> None:
    # What the docs page runs; kubernetes-validate ships the schemas (no network).
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            *map(str, k8s_files()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARN" not in done.stdout, done.stdout  # a kind without a schema only warns
    assert done.stdout.count("passed for resource") == len(DOCS)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "template", "spec", "containers", 0, "securityContext", "runAsNonroot"), True),
        (("spec", "replicas"), "two"),
        (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "http"),
    ],
    ids=["misspelt-field", "wrong-type", "port-not-a-number"],
)
def test_the_schema_check_rejects_a_broken_deployment(path: tuple[Any, ...], value: Any) -> None:
    broken = strip_file_notes(find(DOCS, "Deployment", "worklogs"))
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_file_is_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in k8s_files())


# -- restricted ---------------------------------------------------------------------------


def test_every_pod_meets_restricted_and_the_namespace_enforces_it() -> None:
    assert restricted_problems(DOCS) == []
    workloads = {name_of(w) for w, _ in pod_templates(DOCS)}
    assert {"edge", "worklogs", "console", "pgbouncer", "postgres"} <= workloads


@pytest.mark.parametrize(
    ("mutate", "reported"),
    [
        (
            lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
        (lambda c, p: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "drop ALL"),
        (lambda c, p: c["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "SYS_ADMIN"),
        (lambda c, p: p["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
        (lambda c, p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda c, p: c["securityContext"].update(privileged=True), "privileged"),
        (lambda c, p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda c, p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda c, p: c["ports"][0].update(hostPort=8000), "hostPort"),
    ],
    ids=[
        "escalation",
        "caps-kept",
        "caps-added",
        "root-allowed",
        "no-seccomp",
        "privileged",
        "host-network",
        "host-path",
        "host-port",
    ],
)
def test_the_restricted_check_reports_a_weakened_pod(mutate: Any, reported: str) -> None:
    docs = copy.deepcopy(DOCS)
    edge = find(docs, "Deployment", "edge")["spec"]["template"]["spec"]
    mutate(edge["containers"][0], edge)
    problems = restricted_problems(docs)
    assert any(reported.lower() in p.lower() and "edge" in p for p in problems), problems


def test_the_restricted_check_reports_a_namespace_that_does_not_enforce_it() -> None:
    docs = copy.deepcopy(DOCS)
    find(docs, "Namespace", "tenancy")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"
    ] = "baseline"
    assert restricted_problems(docs) == ["namespace tenancy does not enforce restricted"]


# -- network policies -----------------------------------------------------------------------


def test_the_network_invariants_hold() -> None:
    assert network_problems(DOCS) == []
    assert admitted(DOCS, "worklogs") == {"edge"}
    assert admitted(DOCS, "console") == {ADMIN_INGRESS}
    assert admitted(DOCS, "postgres") == {"pgbouncer", "tenancy-setup"}
    assert admitted(DOCS, "pgbouncer") == {"edge", "worklogs", "console", "tenancy-setup"}
    assert admitted(DOCS, "redis") == {"edge", "worklogs", "console", "tenancy-setup"}
    assert "namespace kubernetes.io/metadata.name=ingress-nginx" in admitted(DOCS, "edge")


def without(docs: list[Doc], kind: str, name: str) -> list[Doc]:
    return [d for d in docs if not (d["kind"] == kind and name_of(d) == name)]


def test_removing_the_worklogs_policy_is_reported() -> None:
    problems = network_problems(without(copy.deepcopy(DOCS), "NetworkPolicy", "worklogs"))
    assert "worklogs: no NetworkPolicy selects it" in problems
    assert any(p.startswith("worklogs admits no one") for p in problems), problems


def test_removing_the_default_deny_lets_every_pod_talk_and_is_reported() -> None:
    docs = without(copy.deepcopy(DOCS), "NetworkPolicy", "default-deny")
    assert "no default-deny NetworkPolicy (ingress and egress) for the namespace" in (
        network_problems(docs)
    )


def policy_peers(docs: list[Doc], name: str) -> list[Doc]:
    rules: list[Doc] = find(docs, "NetworkPolicy", name)["spec"]["ingress"]
    return rules


@pytest.mark.parametrize(
    ("policy", "peer", "reported"),
    [
        ("worklogs", {"podSelector": {"matchLabels": {NAME_LABEL: "console"}}}, "worklogs"),
        ("worklogs", {"namespaceSelector": {}}, "worklogs"),
        ("worklogs", {"ipBlock": {"cidr": "0.0.0.0/0"}}, "worklogs"),
        ("postgres", {"podSelector": {"matchLabels": {NAME_LABEL: "edge"}}}, "postgres"),
        ("pgbouncer", {"podSelector": {}}, "pgbouncer"),
        ("console", {"namespaceSelector": {"matchLabels": {"x": "public"}}}, "console"),
    ],
    ids=["console-to-worklogs", "any-namespace", "any-ip", "edge-to-db", "any-pod", "public"],
)
def test_an_extra_peer_is_reported(policy: str, peer: Doc, reported: str) -> None:
    docs = copy.deepcopy(DOCS)
    policy_peers(docs, policy)[0]["from"].append(peer)
    assert any(p.startswith(f"{reported} admits") for p in network_problems(docs))


def test_a_rule_without_sources_admits_anyone_and_is_reported() -> None:
    docs = copy.deepcopy(DOCS)
    del policy_peers(docs, "worklogs")[0]["from"]
    assert admitted(docs, "worklogs") == {"anyone"}
    assert any(p.startswith("worklogs admits ['anyone']") for p in network_problems(docs))


def test_a_tenant_data_workload_without_its_label_is_reported() -> None:
    docs = copy.deepcopy(DOCS)
    template = find(docs, "Deployment", "console")["spec"]["template"]
    del template["metadata"]["labels"]["tenancy.example/tenant-data"]
    assert any("labelled" in p for p in network_problems(docs))


def test_a_relabelled_pod_escapes_its_policy_and_is_reported() -> None:
    docs = copy.deepcopy(DOCS)
    find(docs, "Deployment", "worklogs")["spec"]["template"]["metadata"]["labels"][NAME_LABEL] = (
        "worklogs-v2"
    )
    assert network_problems(docs)


# -- secrets and consistency ------------------------------------------------------------------


def test_no_secret_value_in_any_manifest() -> None:
    assert k8s_secret_problems(DOCS) == []
    assert not [d for d in DOCS if d["kind"] == "Secret"]
    references = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for _, template in pod_templates(DOCS)
        for container in containers_of(template["spec"])
        for env in container.get("env") or []
        if "secretKeyRef" in (env.get("valueFrom") or {})
    }
    assert references == {"tenancy-app", "tenancy-db"}


@pytest.mark.parametrize(
    ("mutate", "reported"),
    [
        (
            lambda docs: docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "leak"},
                    "stringData": {"pw": "hunter2"},
                }
            ),
            "Secret leak holds values",
        ),
        (
            lambda docs: find(docs, "Deployment", "edge")["spec"]["template"]["spec"]["containers"][
                0
            ]["env"].append({"name": "PGPASSWORD", "value": "hunter2"}),
            "PGPASSWORD is a secret given inline",
        ),
        (
            lambda docs: find(docs, "Deployment", "edge")["spec"]["template"]["spec"]["containers"][
                0
            ]["env"].append({"name": "EXTRA", "value": "ab" * 32}),
            "EXTRA holds a key-shaped value",
        ),
        (
            lambda docs: find(docs, "ConfigMap", "tenancy-settings")["data"].update(
                TENANCY_DATABASE_URL="postgresql://tenancy_app:hunter2@pgbouncer/tenancy"
            ),
            "credentials in a URL",
        ),
        (
            lambda docs: find(docs, "ConfigMap", "tenancy-settings")["data"].update(
                TENANCY_ROOT_KEY="q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ2Y="
            ),
            "TENANCY_ROOT_KEY holds a key-shaped value",
        ),
    ],
    ids=["secret-object", "inline-password", "hex-blob", "url-credentials", "b64-key"],
)
def test_the_secret_check_reports_an_inlined_secret(mutate: Any, reported: str) -> None:
    docs = copy.deepcopy(DOCS)
    mutate(docs)
    assert any(reported in p for p in k8s_secret_problems(docs)), k8s_secret_problems(docs)


def configmap(name: str) -> dict[str, str]:
    data: dict[str, str] = find(DOCS, "ConfigMap", name)["data"]
    return data


def test_the_configmaps_carry_the_files_compose_uses() -> None:
    # One text each: what compose mounts is what Kubernetes runs.
    assert configmap("opa-config")["opa.yaml"] == OPA_CONFIG.read_text()
    assert configmap("pgbouncer-config")["pgbouncer.ini"] == PGBOUNCER_INI.read_text()
    initdb = configmap("postgres-initdb")
    assert initdb["10-roles.sql"] == (ROOT / "infra/sql/roles.sql").read_text()
    assert initdb["20-tenancy.sh"] == (ROOT / "infra/compose/initdb/20-tenancy.sh").read_text()


def test_opa_runs_as_a_sidecar_beside_each_deciding_service() -> None:
    for name in ("edge", "worklogs"):
        spec = find(DOCS, "Deployment", name)["spec"]["template"]["spec"]
        opa = next(c for c in spec["containers"] if c["name"] == "opa")
        assert "--addr=127.0.0.1:8181" in opa["args"]  # loopback: the pod's own service only
        assert "--config-file=/config/opa.yaml" in opa["args"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["TENANCY_OPA_URL"] == "http://127.0.0.1:8181"
    bundles = find(DOCS, "Service", "bundles")
    assert bundles["spec"]["ports"][0]["port"] == 8080
    assert yaml.safe_load(OPA_CONFIG.read_text())["services"]["bundles"]["url"] == (
        "http://bundles:8080"
    )


def test_two_replicas_of_the_edge_and_worklogs() -> None:
    for name in ("edge", "worklogs"):
        assert find(DOCS, "Deployment", name)["spec"]["replicas"] >= 2
