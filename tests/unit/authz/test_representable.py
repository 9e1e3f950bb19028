"""Input an engine cannot read exactly is refused before any engine is asked.

rego-cpp truncates a string at NUL, wraps an integer past 64 bits and cannot encode a
lone surrogate, so it would decide differently from OPA (``roles: ["member\\u0000x"]``
is ``member`` to it). Such input is ``DecisionUnavailable`` on every path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import pytest

from tenancy.authz import Action, Authorizer, Decision, EmbeddedRego, build_input
from tenancy.authz.policytests import fixture_bundle
from tenancy.authz.representable import INT64_MAX, INT64_MIN, MAX_DEPTH, check_representable
from tenancy.context import Principal, TenantContext
from tenancy.errors import DecisionUnavailable
from tests.unit.authz.conftest import EngineFactory

pytestmark = pytest.mark.anyio

MEMBER: dict[str, Any] = {
    "now": 1795000000,
    "service": "worklogs",
    "action": {"method": "GET", "route": "/worklogs"},
    "tenant": {"id": "t-acme", "region": "eu-central-1", "status": "active"},
    "resource": {"tenant_id": "t-acme"},
    "principal": {
        "issuer": "https://idp",
        "tenant_id": "t-acme",
        "subject": "alice",
        "kind": "user",
        "roles": ["member"],
        "scopes": ["worklogs:read"],
        "mfa": False,
        "assurance": 1,
        "device_trusted": False,
        "caller": None,
        "support_grant_id": None,
    },
    "support_grant": None,
}


def with_value(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(MEMBER)
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    node[last] = value
    return document


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


UNREPRESENTABLE = {
    "NUL in a role (rego-cpp reads member)": with_value("principal.roles", ["member\x00x"]),
    "NUL in the subject": with_value("principal.subject", "alice\x00"),
    "a float rego-cpp cannot parse": with_value("now", 1.7976931348623155e308),
    "a float beyond 2^53": with_value("now", 2.0**53 * 2),
    "C0 control in a scope": with_value("principal.scopes", ["worklogs:read\x1f"]),
    "newline in the tenant id": with_value("tenant.id", "t-acme\n"),
    "DEL in the status": with_value("tenant.status", "active\x7f"),
    "C1 control in the resource tenant": with_value("resource.tenant_id", "t-acme\x85"),
    "lone high surrogate": with_value("principal.subject", "alice\ud800"),
    "lone low surrogate in a key": with_value("resource.attributes", {"\udc00": "x"}),
    "NUL in a key": with_value("resource.attributes", {"a\x00": "x"}),
    "integer past int64 (rego-cpp wraps it)": with_value("now", 2**64 + 1795000000),
    "integer just past int64": with_value("principal.assurance", INT64_MAX + 1),
    "integer just below int64": with_value("principal.assurance", INT64_MIN - 1),
    "NaN": with_value("now", math.nan),
    "infinity": with_value("now", math.inf),
    "minus infinity": with_value("support_grant", {"expires_at": -math.inf}),
    # rego-cpp holds about six decimals: these two times would be equal there, not in OPA.
    "a fractional time": with_value("now", 1795000000.0000002),
    "a fraction anywhere": with_value("resource.attributes", {"x": 0.1}),
    "a key that is not a string": with_value("resource.attributes", {1: "x"}),
    "a set (rego-cpp makes it a Rego set, OPA cannot)": with_value("principal.roles", {"member"}),
    "bytes": with_value("principal.subject", b"alice"),
    "an arbitrary object": with_value("principal.caller", object()),
    "nesting too deep": with_value("resource.attributes", {"x": nested(MAX_DEPTH)}),
}


@pytest.mark.parametrize("document", UNREPRESENTABLE.values(), ids=UNREPRESENTABLE.keys())
def test_unrepresentable_input_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(DecisionUnavailable, match="policy input"):
        check_representable(document)


@pytest.mark.parametrize("document", UNREPRESENTABLE.values(), ids=UNREPRESENTABLE.keys())
def test_every_engine_refuses_unrepresentable_input(
    document: dict[str, Any], engine_factory: EngineFactory
) -> None:
    # Before: rego-cpp allowed the NUL role and the wrapped time, raised
    # UnicodeEncodeError on a surrogate, while OPA denied: the engines disagreed.
    engine = engine_factory(fixture_bundle())
    with pytest.raises(DecisionUnavailable):
        engine.decide(document)


def test_representable_edges_are_accepted_and_decided() -> None:
    document = with_value(
        "resource.attributes",
        {
            "max": INT64_MAX,
            "min": INT64_MIN,
            "float": 2.0**53,
            "whole": -0.0,
            "unicode": "zoë ☃ \U0001d518 \u2028",
            "tuple": ("a", 1),
            "deep": nested(MAX_DEPTH - 3),
        },
    )
    check_representable(document)
    assert EmbeddedRego(fixture_bundle()).decide(document).allow


def test_non_object_input_is_refused() -> None:
    with pytest.raises(DecisionUnavailable):
        check_representable(["not", "an", "object"])  # type: ignore[arg-type]


class Recording:
    """A custom decision point that records whether it was asked."""

    name = "recording"
    revision = 1

    def __init__(self) -> None:
        self.inputs: list[Mapping[str, Any]] = []

    def decide(self, input: Mapping[str, Any]) -> Decision:
        self.inputs.append(input)
        return Decision(allow=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("roles", frozenset({"member\x00x"})),
        ("subject", "alice\ud800"),
        ("tenant_id", "t-acme\x1b"),
    ],
)
async def test_authorizer_refuses_before_any_engine_is_asked(field: str, value: Any) -> None:
    # A context built without the verifier (or by a verifier that let it through).
    fields: dict[str, Any] = {
        "issuer": "https://idp",
        "tenant_id": "t-acme",
        "subject": "alice",
        "roles": frozenset({"member"}),
        "scopes": frozenset({"worklogs:read"}),
    }
    fields[field] = value
    ctx = TenantContext("t-acme", "acme", "eu-central-1", Principal(**fields), "rid")
    engine = Recording()
    with pytest.raises(DecisionUnavailable):
        await Authorizer(engine, service="worklogs").decide(
            ctx, Action.http("GET", "/worklogs"), now=1795000000
        )
    assert engine.inputs == []


def test_builder_input_is_representable() -> None:
    principal = Principal(
        issuer="https://idp",
        tenant_id="t-acme",
        subject="alice",
        roles=frozenset({"member"}),
        scopes=frozenset({"worklogs:read"}),
    )
    ctx = TenantContext("t-acme", "acme", "eu-central-1", principal, "rid")
    check_representable(
        build_input(
            ctx,
            service="worklogs",
            action=Action.http("GET", "/worklogs"),
            now=1795000000,
            tenant_status="active",
        )
    )
