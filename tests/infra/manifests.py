"""The deployment files under infra/, loaded, and the invariants they must keep.

Each ``*_problems`` function takes the loaded documents (so a test can mutate a copy in
memory) and returns one line per broken invariant; an empty list means it holds. The
tests run them on the files as committed, and on mutated copies to show that each one
reports what it guards against.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
COMPOSE_FILE = INFRA / "compose" / "compose.yaml"
COMPOSE_SCHEMA = INFRA / "schemas" / "compose-spec.json"
HAPROXY_CFG = INFRA / "haproxy" / "haproxy.cfg"
PGBOUNCER_INI = INFRA / "pgbouncer" / "pgbouncer.ini"
OPA_CONFIG = INFRA / "opa" / "config.yaml"
LAUNCHER = INFRA / "compose" / "launch.py"
# The Kubernetes release the manifests are validated against (kubernetes-validate ships
# its schemas; nothing is fetched).
KUBERNETES_VERSION = "1.32.0"
# The directories whose every file is scanned for secret values.
SCANNED = ("compose", "k8s", "haproxy", "pgbouncer", "opa")

Doc = dict[str, Any]

# Workloads that hold tenant data (in flight or at rest), and who may reach them.
TENANT_DATA = frozenset({"edge", "worklogs", "console"})
SERVICES = frozenset({"edge", "worklogs", "console", "tenancy-setup"})
TENANT_DATA_LABEL = "tenancy.example/tenant-data"
NAME_LABEL = "app.kubernetes.io/name"
ADMIN_INGRESS = "namespace kubernetes.io/metadata.name=admin-ingress"
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")
# Volume types the `restricted` Pod Security Standard allows.
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


# -- loading -------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    """The manifests (every YAML file in infra/k8s but kustomize's own)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents() -> list[Doc]:
    """Every Kubernetes object in infra/k8s, in file order."""
    docs: list[Doc] = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["metadata"]["annotations"]["tests.infra/file"] = path.name
                docs.append(doc)
    return docs


def strip_file_notes(doc: Doc) -> Doc:
    """``doc`` without the annotation :func:`k8s_documents` adds (for schema checks)."""
    found: Doc = yaml.safe_load(yaml.safe_dump(doc))
    notes = found["metadata"]["annotations"]
    notes.pop("tests.infra/file", None)
    if not notes:
        del found["metadata"]["annotations"]
    return found


def compose_document() -> Doc:
    """compose.yaml as Compose reads it (YAML anchors and merge keys resolved)."""
    loaded: Doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def pgbouncer_config(text: str | None = None) -> configparser.ConfigParser:
    """pgbouncer.ini parsed as PgBouncer reads it (``;`` and ``#`` comments)."""
    parser = configparser.ConfigParser(
        comment_prefixes=(";", "#"), inline_comment_prefixes=(";",), interpolation=None
    )
    parser.read_string(PGBOUNCER_INI.read_text(encoding="utf-8") if text is None else text)
    return parser


# -- Kubernetes: pods ----------------------------------------------------------------------


def name_of(doc: Doc) -> str:
    return str(doc.get("metadata", {}).get("name", "?"))


def pod_templates(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, its pod template) for every object that runs pods."""
    for doc in docs:
        kind = doc.get("kind")
        if kind in POD_KINDS:
            yield doc, doc["spec"]["template"]
        elif kind == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            yield doc, doc


def containers_of(spec: Doc) -> Iterator[Doc]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def restricted_problems(docs: list[Doc]) -> list[str]:
    """What keeps a pod from the `restricted` Pod Security Standard, and a namespace
    that does not enforce it."""
    problems: list[str] = []
    for doc in docs:
        if doc.get("kind") == "Namespace":
            labels = doc["metadata"].get("labels") or {}
            if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                problems.append(f"namespace {name_of(doc)} does not enforce restricted")
    if not any(doc.get("kind") == "Namespace" for doc in docs):
        problems.append("no Namespace: nothing enforces restricted")
    for workload, template in pod_templates(docs):
        where = f"{workload['kind']} {name_of(workload)}"
        spec = template["spec"]
        pod_ctx = spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag) is True:
                problems.append(f"{where}: {flag}")
        for volume in spec.get("volumes") or []:
            kinds = set(volume) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                problems.append(f"{where}: volume {volume['name']} is {sorted(kinds)}")
        if pod_ctx.get("runAsUser") == 0:
            problems.append(f"{where}: the pod runs as uid 0")
        if pod_ctx.get("sysctls"):
            problems.append(f"{where}: sets sysctls")
        for container in containers_of(spec):
            problems += _container_problems(f"{where}/{container['name']}", container, pod_ctx)
    return problems


def _container_problems(where: str, container: Doc, pod_ctx: Doc) -> list[str]:
    ctx = container.get("securityContext") or {}
    problems: list[str] = []
    if ctx.get("privileged") is True:
        problems.append(f"{where}: privileged")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    caps = ctx.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append(f"{where}: capabilities do not drop ALL")
    added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
    if added:
        problems.append(f"{where}: adds capabilities {sorted(added)}")
    non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if non_root is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
        problems.append(f"{where}: runs as uid 0")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{where}: seccompProfile is {seccomp or 'unset'}, not RuntimeDefault")
    if ctx.get("procMount", "Default") != "Default":
        problems.append(f"{where}: procMount {ctx['procMount']}")
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            problems.append(f"{where}: hostPort {port['hostPort']}")
    return problems


# -- Kubernetes: network policies ----------------------------------------------------------


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector matches; only matchLabels is understood (a selector with
    matchExpressions is reported by network_problems rather than guessed at)."""
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Each workload's pod labels, by workload name."""
    return {
        name_of(workload): dict(template["metadata"].get("labels") or {})
        for workload, template in pod_templates(docs)
    }


def policies(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") == "NetworkPolicy"]


def _ingress_policies(docs: list[Doc], labels: Mapping[str, str]) -> list[Doc]:
    """The policies that govern ingress to pods with ``labels``."""
    found = []
    for policy in policies(docs):
        spec = policy["spec"]
        types = spec.get("policyTypes") or ["Ingress"]
        if "Ingress" in types and _matches(spec.get("podSelector") or {}, labels):
            found.append(policy)
    return found


def admitted(docs: list[Doc], workload: str) -> set[str]:
    """Who may connect to ``workload``'s pods: workload names of this namespace, or
    ``namespace k=v`` / ``ipBlock CIDR`` / ``anyone`` / ``every pod``. An empty set: no one
    (or no policy governs it, which :func:`network_problems` reports separately)."""
    labels = pod_labels(docs)
    governing = _ingress_policies(docs, labels[workload])
    if not governing:
        return {"anyone"}
    peers: set[str] = set()
    for policy in governing:
        for rule in policy["spec"].get("ingress") or []:
            sources = rule.get("from")
            if not sources:
                peers.add("anyone")
                continue
            for peer in sources:
                peers |= _describe_peer(peer, labels)
    return peers


def _describe_peer(peer: Doc, labels: Mapping[str, Mapping[str, str]]) -> set[str]:
    if "ipBlock" in peer:
        return {f"ipBlock {peer['ipBlock'].get('cidr')}"}
    if "namespaceSelector" in peer:
        wanted = peer["namespaceSelector"].get("matchLabels") or {}
        if not wanted:
            return {"anyone"}
        return {"namespace " + ",".join(f"{k}={v}" for k, v in sorted(wanted.items()))}
    selector = peer.get("podSelector") or {}
    if not selector.get("matchLabels"):
        return {"every pod"}
    return {name for name, found in labels.items() if _matches(selector, found)} or {"nobody"}


def network_problems(docs: list[Doc]) -> list[str]:
    """The network invariants: default deny; each tenant-data workload selected by a
    policy of its own; worklogs admits the edge only, the console the admin ingress only,
    PgBouncer the services only, PostgreSQL PgBouncer and the setup Job only."""
    problems: list[str] = []
    for policy in policies(docs):
        for selector in _selectors(policy["spec"]):
            if selector.get("matchExpressions"):
                problems.append(
                    f"NetworkPolicy {name_of(policy)} uses matchExpressions (not checked)"
                )
    if not any(
        not (p["spec"].get("podSelector") or {}).get("matchLabels")
        and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies(docs)
    ):
        problems.append("no default-deny NetworkPolicy (ingress and egress) for the namespace")
    labels = pod_labels(docs)
    marked = {
        name_of(doc)
        for doc, template in pod_templates(docs)
        if (template["metadata"].get("labels") or {}).get(TENANT_DATA_LABEL) == "true"
    }
    if marked != TENANT_DATA:
        problems.append(f"workloads labelled {TENANT_DATA_LABEL}: {sorted(marked)}")
    for workload in sorted(TENANT_DATA | {"pgbouncer", "postgres"}):
        if workload not in labels:
            problems.append(f"no workload {workload}")
            continue
        own = [
            p
            for p in _ingress_policies(docs, labels[workload])
            if (p["spec"].get("podSelector") or {}).get("matchLabels")
        ]
        if not own:
            problems.append(f"{workload}: no NetworkPolicy selects it")
    expectations: dict[str, tuple[set[str], bool]] = {
        # workload: (who may connect, whether it must be exactly that set)
        "worklogs": ({"edge"}, True),
        "console": ({ADMIN_INGRESS}, True),
        "pgbouncer": (set(SERVICES), False),
        "postgres": ({"pgbouncer", "tenancy-setup"}, False),
    }
    for workload, (allowed, exact) in expectations.items():
        if workload not in labels:
            continue
        peers = admitted(docs, workload)
        if (exact and peers != allowed) or not peers or not peers <= allowed:
            problems.append(
                f"{workload} admits {sorted(peers) or 'no one'}, "
                f"expected {'exactly ' if exact else 'only '}{sorted(allowed)}"
            )
    return problems


def _selectors(spec: Doc) -> Iterator[Doc]:
    yield spec.get("podSelector") or {}
    for direction, key in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            for peer in rule.get(key) or []:
                for which in ("podSelector", "namespaceSelector"):
                    if which in peer:
                        yield peer[which] or {}


# -- secrets -------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(?:^|_)KEY$|PRIVATE", re.I)
REFERENCE_SUFFIXES = ("_FILE", "_PATH", "_URL", "_DIR")
HEX_BLOB = re.compile(r"^[0-9a-fA-F]{32,}$")
B64_BLOB = re.compile(r"^[A-Za-z0-9+/_-]{32,}={0,2}$")
TEXT_PATTERNS = {
    "a private key": re.compile(r"PRIVATE KEY"),
    "a password in a connection string": re.compile(r"(?i)\bpassword\s*=\s*[^\s;'\"]"),
    "credentials in a URL": re.compile(r"://[^/\s:@'\"]+:[^/\s@'\"]+@"),
    "a userlist entry": re.compile(r'^"[^"]+"\s+"[^"]+"', re.M),
}


def looks_secret(value: str) -> bool:
    """A value shaped like key material: a long hex string, or a long base64 one with
    mixed character classes (a word or a path is neither)."""
    value = value.strip()
    if HEX_BLOB.fullmatch(value):
        return True
    if not B64_BLOB.fullmatch(value):
        return False
    classes = sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
    return classes == 3


def text_secret_problems(name: str, text: str) -> list[str]:
    """Secret-shaped text in one file (a comment counts too: it would be committed)."""
    problems = [
        f"{name}: {what}" for what, pattern in TEXT_PATTERNS.items() if pattern.search(text)
    ]
    for token in re.findall(r"[A-Za-z0-9+/=_-]{32,}", text):
        if looks_secret(token):
            problems.append(f"{name}: a key-shaped value {token[:6]}...")
    return problems


def env_secret_problems(where: str, name: str, value: Any) -> list[str]:
    """An environment variable given a secret's value inline."""
    if value is None:
        return []
    text = str(value)
    if looks_secret(text):
        return [f"{where}: {name} holds a key-shaped value"]
    if SECRET_NAME.search(name) and not name.endswith(REFERENCE_SUFFIXES) and text:
        return [f"{where}: {name} is a secret given inline"]
    return []


def k8s_secret_problems(docs: list[Doc]) -> list[str]:
    problems: list[str] = []
    for doc in docs:
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            problems.append(f"Secret {name_of(doc)} holds values (create it out of band)")
        if doc.get("kind") == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                problems += text_secret_problems(f"ConfigMap {name_of(doc)}/{key}", str(value))
                problems += env_secret_problems(f"ConfigMap {name_of(doc)}", key, value)
    for workload, template in pod_templates(docs):
        for container in containers_of(template["spec"]):
            where = f"{workload['kind']} {name_of(workload)}/{container['name']}"
            for env in container.get("env") or []:
                problems += env_secret_problems(where, env["name"], env.get("value"))
            for arg in [*(container.get("args") or []), *(container.get("command") or [])]:
                problems += text_secret_problems(f"{where} args", str(arg))
    return problems


def compose_secret_problems(compose: Doc) -> list[str]:
    problems: list[str] = []
    for name, secret in (compose.get("secrets") or {}).items():
        if not (set(secret) & {"file", "external"}):
            problems.append(f"compose secret {name} is not a file or external: {sorted(secret)}")
    for service, spec in (compose.get("services") or {}).items():
        env = spec.get("environment") or {}
        pairs = env.items() if isinstance(env, dict) else (item.partition("=")[::2] for item in env)
        for key, value in pairs:
            problems += env_secret_problems(f"compose service {service}", key, value)
        command = spec.get("command") or []
        for arg in [command] if isinstance(command, str) else command:
            problems += text_secret_problems(f"compose service {service} command", str(arg))
    return problems


def scanned_files() -> list[Path]:
    """Every committed file of the deployment (compose, k8s, haproxy, pgbouncer, opa)."""
    return sorted(
        path
        for folder in SCANNED
        for path in (INFRA / folder).rglob("*")
        if path.is_file() and "secrets" not in path.relative_to(INFRA).parts[1:2]
    )


# -- PgBouncer -----------------------------------------------------------------------------


def pgbouncer_problems(parser: configparser.ConfigParser) -> list[str]:
    problems: list[str] = []
    if not parser.has_section("pgbouncer") or not parser.has_section("databases"):
        return ["pgbouncer.ini lacks a [pgbouncer] or [databases] section"]
    section = parser["pgbouncer"]
    if section.get("pool_mode", "session").strip() != "transaction":
        problems.append(f"pool_mode is {section.get('pool_mode', 'session (default)')}")
    if section.get("auth_type", "").strip() not in ("scram-sha-256",):
        problems.append(f"auth_type is {section.get('auth_type')!r}, not scram-sha-256")
    if not section.get("auth_file", "").startswith("/run/secrets/"):
        problems.append("auth_file is not a mounted secret under /run/secrets/")
    for name, target in parser["databases"].items():
        if "password" in target.lower():
            problems.append(f"database {name} carries a password")
    return problems


# -- environment variables -----------------------------------------------------------------


def known_settings() -> set[str]:
    """Every ``TENANCY_*`` name the library and the examples read (string literals)."""
    names: set[str] = set()
    for folder in (ROOT / "tenancy", ROOT / "examples" / "tenancy_examples"):
        for path in folder.rglob("*.py"):
            names |= set(re.findall(r"TENANCY_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return names
