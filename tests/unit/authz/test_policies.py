"""The shipped policies: their Rego unit tests on OPA, and one answer on every engine."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from tenancy.authz import Decision, EmbeddedRego
from tenancy.authz.policytests import fixture_bundle
from tests.unit.authz.conftest import (
    CASES,
    EngineFactory,
    bundle_with,
    go_engine_class,
    rego_test_modules,
)

TEST_RULE = re.compile(r"^(test_\w+) if\b", re.MULTILINE)


def rego_tests() -> list[tuple[str, str]]:
    found = []
    for name, source in rego_test_modules().items():
        package = re.search(r"^package ([\w.]+)", source, re.MULTILINE)
        assert package, name
        found += [(package.group(1), rule) for rule in TEST_RULE.findall(source)]
    return found


def test_every_policy_has_tests() -> None:
    packages = {package for package, _ in rego_tests()}
    assert packages == {"tenancy.authz_test"}
    assert len(rego_tests()) >= 15


@pytest.mark.parametrize(("package", "rule"), rego_tests(), ids=lambda v: str(v))
def test_rego_unit_test_passes_on_opa(package: str, rule: str) -> None:
    # rego-cpp crashes on `with`, so the Rego tests run on OPA's own evaluator; the case
    # table below holds every engine to the same answers.
    engine = go_engine_class()(fixture_bundle(), include_tests=rego_test_modules())
    assert engine.evaluate(f"{package}.{rule}") is True


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_table_on_every_engine(case: dict[str, Any], engine_factory: EngineFactory) -> None:
    decision = engine_factory(bundle_with(case.get("data"))).decide(case["input"])
    assert (decision.allow, list(decision.reasons)) == (case["allow"], case["reasons"])


def _inputs() -> list[dict[str, Any]]:
    routes = [
        ("GET", "/worklogs"),
        ("POST", "/worklogs"),
        ("GET", "/worklogs/export"),
        ("DELETE", "/worklogs/{id}"),
        ("GET", "/whoami"),
        ("PUT", "/worklogs"),
    ]
    roles = [[], ["viewer"], ["member"], ["admin"], ["viewer", "admin"]]
    scopes = [[], ["worklogs:read"], ["worklogs:read", "worklogs:write", "worklogs:export"]]
    inputs = []
    for (method, route), role, scope, mfa, kind, other_tenant, service in itertools.product(
        routes,
        roles,
        scopes,
        (False, True),
        ("user", "service", "support"),
        (False, True),
        ("worklogs", "edge"),
    ):
        inputs.append(
            {
                "now": 1795000000,
                "service": service,
                "action": {"method": method, "route": route},
                "tenant": {"id": "t-acme", "status": "active"},
                "resource": {"tenant_id": "t-globex" if other_tenant else "t-acme"},
                "principal": {
                    "tenant_id": "t-acme",
                    "subject": "reports",
                    "kind": kind,
                    "roles": role,
                    "scopes": scope,
                    "mfa": mfa,
                },
            }
        )
    return inputs


def test_engines_agree_on_every_combination() -> None:
    go_class = go_engine_class()
    data = [[["tenancy", "service_scopes"], {"reports": ["worklogs:read"]}]]
    embedded, go = EmbeddedRego(bundle_with(data)), go_class(bundle_with(data))
    inputs = _inputs()
    differences = []
    allowed = 0
    for document in inputs:
        mine: Decision = embedded.decide(document)
        theirs: Decision = go.decide(document)
        allowed += mine.allow
        if (mine.allow, mine.reasons, mine.scopes) != (theirs.allow, theirs.reasons, theirs.scopes):
            differences.append((document, mine, theirs))
    assert differences == []
    assert 0 < allowed < len(inputs)  # the table exercises both answers
