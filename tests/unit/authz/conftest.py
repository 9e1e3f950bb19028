"""Policy engines for the authz tests: the embedded default and OPA's own Go evaluator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tenancy.authz import EmbeddedRego, PolicyBundle, PolicyDecisionPoint, default_policy_dir
from tests.support.postgres import in_ci

POLICIES = default_policy_dir()
CASES = json.loads((POLICIES / "cases" / "authz.json").read_text())["cases"]
ENGINES = ("embedded-rego", "opa-go")


def go_engine_class() -> Any:
    """``GoRego``, or skip (fail under CI=true, where ``make test`` installs it)."""
    try:
        import opa_bindings  # noqa: F401
    except ImportError:
        message = ("opa-golib-python-bindings is not installed (make test installs it with "
                   "--ignore-requires-python)")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    from tenancy.authz.golib import GoRego

    return GoRego


EngineFactory = Callable[[PolicyBundle], PolicyDecisionPoint]


@pytest.fixture(params=ENGINES)
def engine_factory(request: pytest.FixtureRequest) -> EngineFactory:
    if request.param == "embedded-rego":
        return EmbeddedRego
    return go_engine_class()  # type: ignore[no-any-return]


def bundle_with(overrides: list[list[Any]] | None = None) -> PolicyBundle:
    bundle = PolicyBundle.from_directory(POLICIES)
    for path, value in overrides or []:
        bundle.set(tuple(path), value)
    return bundle


def rego_test_modules() -> dict[str, str]:
    return {str(p.relative_to(POLICIES)): p.read_text()
            for p in sorted(POLICIES.rglob("*_test.rego"))}


@pytest.fixture
def bundle() -> Iterator[PolicyBundle]:
    yield PolicyBundle.from_directory(POLICIES)
