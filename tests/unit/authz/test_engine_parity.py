"""Differential test: the embedded engine and OPA's Go evaluator decide every input alike.

5,000 generated inputs (hypothesis, derandomized: the same inputs on every run): inputs
shaped like the library's own builder, many of them allowed, and malformed ones: fields
missing, of the wrong type or out of range, whole sections replaced, unicode everywhere,
and values no engine may be handed (NUL and other control characters, lone surrogates,
integers past 64 bits, non-finite, fractional or huge floats, sets, non-string keys).

For each input:
- a value no engine reads exactly is refused by ``check_representable`` before any
  engine is asked (``DecisionUnavailable`` on both), and nothing else is;
- otherwise both engines decide (neither errs) and give the same allow, reasons,
  scopes and valid_until;
- an input that is not well formed (``well_formed`` below restates the policy's rule
  in Python, independently) is denied with exactly ``invalid-input``, and a
  well-formed one never carries that reason.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenancy.authz import Decision, EmbeddedRego, PolicyDecisionPoint
from tenancy.authz.representable import INT64_MAX, INT64_MIN, check_representable
from tenancy.errors import DecisionUnavailable
from tests.unit.authz.conftest import POLICIES, bundle_with, go_engine_class

EXAMPLES = 5000
NOW = 1795000000
MAX_TIME = 2**53 - 1
KINDS = ("user", "service", "support")
INVALID = ("invalid-input",)

POLICY_DATA = json.loads((POLICIES / "cases" / "app.json").read_text())["tenancy"]
ROUTES: dict[str, list[str]] = {s: sorted(r) for s, r in POLICY_DATA["routes"].items()}
ACTIONS = sorted(POLICY_DATA["actions"])
ALL_SCOPES = sorted({s for roles in POLICY_DATA["default_roles"].values() for s in roles})
# Data that exercises every way roles and scopes are looked up.
DATA = [
    [
        ["tenancy", "service_scopes"],
        {"reports": ["worklogs:read"], "exporter": ["worklogs:read", "worklogs:export"]},
    ],
    [["tenancy", "tenant_roles"], {"t-globex": {"viewer": ["worklogs:read", "worklogs:write"]}}],
    [["tenancy", "role_bindings"], {"t-initech": {"alice": ["admin"], "bob": ["viewer"]}}],
]

# -- well-formed inputs ---------------------------------------------------------------

# Unicode that is neither a control character nor a surrogate: both engines must read it
# alike (combining marks, non-BMP, U+2028, U+FEFF, U+FFFF noncharacters included).
UNICODE = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=6)


def often(p: int) -> st.SearchStrategy[bool]:
    """True in about ``p`` of 10 draws (True first, so minimal examples are allowed)."""
    return st.sampled_from([True] * p + [False] * (10 - p))


def mostly(
    usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any], p: int = 7
) -> st.SearchStrategy[Any]:
    """``usual`` in about ``p`` of 10 draws, else ``other``."""
    return often(p).flatmap(lambda yes: usual if yes else other)


TENANTS = mostly(
    st.sampled_from(["t-acme", "t-globex", "t-initech"]), UNICODE.map(lambda s: "t-" + s)
)
SUBJECTS = mostly(st.sampled_from(["alice", "alice", "bob", "sam"]), UNICODE)
SCOPE_SETS = mostly(st.just(ALL_SCOPES), st.lists(st.sampled_from(ALL_SCOPES), unique=True))
ROLE_SETS = mostly(
    st.just(["admin"]),
    st.lists(
        st.sampled_from(["viewer", "member", "admin", "guest", "mëmber"]), unique=True, max_size=3
    ),
)


@st.composite
def well_formed_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """An input as ``build_input`` makes it, tilted towards being allowed."""
    kind = draw(st.sampled_from(["user", "user", "user", "service", "support"]))
    tenant = draw(TENANTS)
    service = draw(st.sampled_from(sorted(ROUTES)))
    shape = draw(st.sampled_from(["route"] * 8 + ["name", "undeclared", "both"]))
    if shape == "route":
        method, route = draw(st.sampled_from(ROUTES[service])).split(" ", 1)
        action: dict[str, str] = {"method": method, "route": route}
    elif shape == "name":
        action = {"name": draw(st.sampled_from([*ACTIONS, "worklogs.purge"]))}
    elif shape == "undeclared":
        action = {
            "method": draw(st.sampled_from(["PUT", "GET", "get"])),
            "route": draw(st.sampled_from(["/worklogs", "/admin", "/worklogs/1"])),
        }
    else:
        action = {"method": "GET", "route": "/worklogs", "name": "worklogs.delete"}
    principal: dict[str, Any] = {
        "issuer": "https://idp",
        "tenant_id": tenant,
        "subject": draw(SUBJECTS),
        "kind": kind,
        "roles": draw(ROLE_SETS),
        "scopes": draw(SCOPE_SETS),
        "mfa": draw(often(7)),
        "assurance": draw(st.integers(1, 3)),
        "device_trusted": draw(st.booleans()),
        "caller": draw(st.sampled_from([None, "edge"])),
        "support_grant_id": None,
    }
    document: dict[str, Any] = {
        "now": draw(st.sampled_from([NOW, NOW, float(NOW), 0, MAX_TIME])),
        "service": service,
        "action": action,
        "principal": principal,
        "tenant": {
            "id": tenant,
            "region": "eu-central-1",
            "status": "active"
            if draw(often(9))
            else draw(st.sampled_from(["suspended", "offboarded", "Active"])),
        },
        "resource": {"tenant_id": tenant if draw(often(9)) else draw(TENANTS)},
        "support_grant": None,
    }
    if kind == "service":
        principal["subject"] = draw(st.sampled_from(["exporter", "exporter", "reports", "other"]))
        principal["roles"] = []
    if kind == "support":
        principal["tenant_id"] = "t-staff"
        principal["mfa"] = draw(often(9))
        principal["device_trusted"] = draw(often(9))
        grant_id = draw(st.sampled_from(["g-1", "g-2"]))
        principal["support_grant_id"] = (
            grant_id if draw(often(9)) else draw(st.sampled_from([None, "g-3"]))
        )
        document["support_grant"] = (
            None
            if not draw(often(9))
            else {
                "id": grant_id,
                "tenant_id": tenant if draw(often(9)) else "t-other",
                "scopes": draw(SCOPE_SETS),
                "expires_at": draw(st.sampled_from([NOW + 3600, NOW + 1, NOW, NOW - 1, MAX_TIME])),
                "active": draw(often(9)),
            }
        )
    if draw(often(1)):  # fields no rule reads are no reason to refuse
        document["resource"]["attributes"] = {"region": draw(UNICODE)}
        document["extra"] = draw(st.sampled_from([None, 1, "x", [1.0], {"a": {}}]))
    return copy.deepcopy(document)  # shares no list with the strategies, so it may be edited


# -- malformed inputs -----------------------------------------------------------------

PATHS: list[tuple[str, ...]] = [
    ("now",),
    ("service",),
    ("action",),
    ("action", "method"),
    ("action", "route"),
    ("action", "name"),
    ("tenant",),
    ("tenant", "id"),
    ("tenant", "status"),
    ("resource",),
    ("resource", "tenant_id"),
    ("principal",),
    ("principal", "tenant_id"),
    ("principal", "subject"),
    ("principal", "kind"),
    ("principal", "roles"),
    ("principal", "scopes"),
    ("principal", "mfa"),
    ("principal", "device_trusted"),
    ("principal", "support_grant_id"),
    ("support_grant",),
    ("support_grant", "id"),
    ("support_grant", "tenant_id"),
    ("support_grant", "scopes"),
    ("support_grant", "expires_at"),
    ("support_grant", "active"),
]
WRONG = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            -1,
            2**53,
            2**62,
            INT64_MAX,
            INT64_MIN,
            2.0**53,
            -(2.0**53),
            float(NOW),
            "",
            "false",
            "true",
            "0",
            "x",
            "member",
            "worklogs:read",
            "user",
            "USER",
            "robot",
            "1795000000",
            [],
            ["x"],
            [1],
            [None],
            [True],
            [["member"]],
            ["worklogs:read", 2],
            {},
            {"a": "worklogs:read"},
            {"id": "t-acme"},
            {"method": "GET", "route": "/worklogs"},
        ]
    ),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(-(2.0**53), 2.0**53).filter(float.is_integer),
    UNICODE,
    st.lists(UNICODE, max_size=3),
    st.dictionaries(UNICODE, UNICODE, max_size=2),
)


@st.composite
def malformed_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed input with one to three fields removed or replaced."""
    document = draw(well_formed_inputs())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        if draw(st.booleans()):
            _delete(document, path)
        else:
            _set(document, path, draw(WRONG))
    return document


# -- values no engine may be handed ---------------------------------------------------

BAD_CHARACTER = st.one_of(
    st.integers(0x00, 0x1F), st.integers(0x7F, 0x9F), st.integers(0xD800, 0xDFFF)
).map(chr)
UNREPRESENTABLE_NUMBER = st.one_of(
    st.integers(min_value=INT64_MAX + 1),
    st.integers(max_value=INT64_MIN - 1),
    st.sampled_from(
        [math.nan, math.inf, -math.inf, NOW + 0.5, 1e-7, 1e300, 1.7976931348623155e308, -(2.0**54)]
    ),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.floats(min_value=2.0**53, exclude_min=True, allow_infinity=False),
)


@st.composite
def unrepresentable_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """An input with one value rego-cpp would misread: refused before any engine."""
    document = draw(well_formed_inputs())
    how = draw(st.sampled_from(["character", "character", "number", "key", "set"]))
    if how == "character":
        # The example among them: roles ["member\u0000x"], read as member.
        path = draw(st.sampled_from(list(_string_paths(document))))
        text = _get(document, path)
        at = draw(st.integers(0, len(text)))
        _get(document, path[:-1])[path[-1]] = text[:at] + draw(BAD_CHARACTER) + text[at:]
    elif how == "number":
        path = draw(
            st.sampled_from([("now",), ("principal", "assurance"), ("support_grant", "expires_at")])
        )
        _set(document, path, draw(UNREPRESENTABLE_NUMBER))
    elif how == "key":
        document["resource"][draw(UNICODE) + draw(BAD_CHARACTER)] = "x"
    else:
        _set(document, ("principal", "roles"), set(document["principal"]["roles"]))
    return document


# -- the policy's rule for well-formed input, restated --------------------------------


def well_formed(document: dict[str, Any]) -> bool:
    """Every field a decision reads present and of its type (``_valid_input``)."""
    action, tenant = document.get("action"), document.get("tenant")
    resource, principal = document.get("resource"), document.get("principal")
    if not (
        _time(document.get("now"))
        and _id(document.get("service"))
        and _action(action)
        and isinstance(tenant, dict)
        and _id(tenant.get("id"))
        and _id(tenant.get("status"))
        and isinstance(resource, dict)
        and _id(resource.get("tenant_id"))
        and isinstance(principal, dict)
    ):
        return False
    kind = principal.get("kind")
    if not (
        _id(principal.get("tenant_id"))
        and _id(principal.get("subject"))
        and isinstance(kind, str)
        and kind in KINDS
        and _strings(principal.get("roles"))
        and _strings(principal.get("scopes"))
        and isinstance(principal.get("mfa"), bool)
    ):
        return False
    if kind != "support":
        return True
    grant_id = principal.get("support_grant_id", 0)
    return (
        isinstance(principal.get("device_trusted"), bool)
        and (grant_id is None or _id(grant_id))
        and "support_grant" in document
        and _grant(document["support_grant"])
    )


def _id(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_TIME


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _action(action: Any) -> bool:
    if not isinstance(action, dict) or any(
        key in action and not isinstance(action[key], str) for key in ("method", "route", "name")
    ):
        return False
    return ("method" in action and "route" in action) or (
        "name" in action and "method" not in action and "route" not in action
    )


def _grant(grant: Any) -> bool:
    return grant is None or (
        isinstance(grant, dict)
        and _id(grant.get("id"))
        and _id(grant.get("tenant_id"))
        and _strings(grant.get("scopes"))
        and _time(grant.get("expires_at"))
        and isinstance(grant.get("active"), bool)
    )


# -- the test -------------------------------------------------------------------------

# About 60 % well formed (most of them allowed), 30 % malformed, 10 % unrepresentable.
STRATEGIES = {
    "well-formed": well_formed_inputs(),
    "malformed": malformed_inputs(),
    "unrepresentable": unrepresentable_inputs(),
}
CASES = st.sampled_from(["well-formed"] * 6 + ["malformed"] * 3 + ["unrepresentable"]).flatmap(
    lambda kind: st.tuples(st.just(kind), STRATEGIES[kind])
)


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[PolicyDecisionPoint, PolicyDecisionPoint]]:
    yield EmbeddedRego(bundle_with(DATA)), go_engine_class()(bundle_with(DATA))


def test_engines_decide_generated_inputs_alike_and_never_allow_malformed_ones(
    engines: tuple[PolicyDecisionPoint, PolicyDecisionPoint],
) -> None:
    embedded, go = engines
    counts = {"examples": 0, "allowed": 0, "denied": 0, "invalid-input": 0, "refused": 0}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(CASES)
    def check(case: tuple[str, dict[str, Any]]) -> None:
        kind, document = case
        counts["examples"] += 1
        try:
            check_representable(document)
        except DecisionUnavailable:
            assert kind == "unrepresentable", "the pre-check refused a readable input"
            counts["refused"] += 1  # refused for both engines: neither is asked
            return
        assert kind != "unrepresentable", "the pre-check let an unreadable value through"
        mine, theirs = embedded.decide(document), go.decide(document)
        assert _answer(mine) == _answer(theirs), json.dumps(document, ensure_ascii=True)
        if well_formed(document):
            assert "invalid-input" not in mine.reasons
        else:
            assert (mine.allow, mine.reasons, mine.scopes) == (False, INVALID, ())
            counts["invalid-input"] += 1
        counts["allowed" if mine.allow else "denied"] += 1

    started = time.perf_counter()
    check()
    elapsed = time.perf_counter() - started
    print(f"\nengine parity: {counts} in {elapsed:.1f} s")
    assert counts["examples"] >= EXAMPLES
    # Meaningful both ways: many allows, many malformed inputs, many refused values.
    assert counts["allowed"] >= EXAMPLES // 5
    assert counts["invalid-input"] >= EXAMPLES // 10
    assert counts["refused"] >= EXAMPLES // 20


def _answer(decision: Decision) -> tuple[Any, ...]:
    return decision.allow, decision.reasons, decision.scopes, decision.valid_until


# -- document paths -------------------------------------------------------------------


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


def _set(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = document
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


def _delete(document: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = document
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


def _string_paths(document: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(document, str):
        yield path
    elif isinstance(document, dict):
        for key, value in document.items():
            yield from _string_paths(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _string_paths(value, (*path, index))
