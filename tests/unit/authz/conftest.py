"""Policy engines for the authz tests: the embedded default and OPA's own Go evaluator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tenancy.authz import EmbeddedRego, PolicyBundle, PolicyDecisionPoint, default_policy_dir
from tenancy.authz.policytests import (
    GO_MISSING,
    bundle_with,
    fixture_bundle,
    policy_cases,
    rego_test_modules,
)
from tests.support.postgres import in_ci

__all__ = ["CASES", "POLICIES", "bundle_with", "go_engine_class", "rego_test_modules"]

POLICIES = default_policy_dir()
CASES = policy_cases(POLICIES)
ENGINES = ("embedded-rego", "opa-go")


def go_engine_class() -> Any:
    """``GoRego``, or skip (fail under CI=true, where ``make test`` installs it)."""
    try:
        import opa_bindings  # noqa: F401
    except ImportError:
        message = f"{GO_MISSING}; make test installs it"
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


@pytest.fixture
def bundle() -> Iterator[PolicyBundle]:
    yield fixture_bundle(POLICIES)
