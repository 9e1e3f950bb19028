"""The shipped policies' own tests, run as a library: evidence that the policies hold.

Two suites:

- ``rego-unit``: every ``test_*`` rule in ``*_test.rego``, evaluated on OPA's own Go
  evaluator (:class:`tenancy.authz.golib.GoRego` with ``include_tests``), because rego-cpp
  crashes on ``with``. That evaluator is an optional install: without it each test is
  reported ``not run`` with the reason, never as passed.
- ``case-table``: every case of ``cases/authz.json`` on the embedded engine
  (:class:`tenancy.authz.EmbeddedRego`), which must give exactly the recorded answer.

Both decide for a small fixture application, ``cases/app.json`` (its routes, actions and
roles), laid over the shipped data as an application's own data would be: the shipped
data declares no application.

A test that raises is ``failed`` with the error in ``detail``; nothing here raises for a
failing policy. The pytest suite (``tests/unit/authz``) reuses the loaders below.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tenancy.authz.bundle import PolicyBundle, default_policy_dir
from tenancy.authz.embedded import EmbeddedRego
from tenancy.errors import ConfigurationError

REGO_UNIT = "rego-unit"
CASE_TABLE = "case-table"
_TEST_RULE = re.compile(r"^(test_\w+) if\b", re.MULTILINE)
_PACKAGE = re.compile(r"^package ([\w.]+)", re.MULTILINE)
GO_MISSING = (
    "opa-golib-python-bindings is not installed (pip install "
    "--ignore-requires-python opa-golib-python-bindings)"
)


class Status(StrEnum):
    """How a policy test ended. ``NOT_RUN`` means the engine was not available (e.g. the Go
    bindings are not installed): neither a pass nor a failure."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not run"


@dataclass(frozen=True, slots=True)
class PolicyTestResult:
    """One policy test: its suite, name, the engine it ran on, and how it ended."""

    suite: str
    name: str
    engine: str
    status: Status
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        """The result as a JSON object of strings (status as its value)."""
        return {
            "suite": self.suite,
            "name": self.name,
            "engine": self.engine,
            "status": self.status.value,
            "detail": self.detail,
        }


def rego_test_modules(directory: str | Path | None = None) -> dict[str, str]:
    """The ``*_test.rego`` sources below ``directory`` (default: the shipped policies)."""
    root = Path(directory) if directory is not None else default_policy_dir()
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*_test.rego"))
    }


def rego_tests(modules: dict[str, str]) -> list[tuple[str, str]]:
    """``(package, rule)`` of every ``test_*`` rule in ``modules``.

    Raises:
        ConfigurationError: a test module declares no package.
    """
    found: list[tuple[str, str]] = []
    for name, source in modules.items():
        package = _PACKAGE.search(source)
        if package is None:
            raise ConfigurationError(f"policy test module {name} declares no package")
        found += [(package.group(1), rule) for rule in _TEST_RULE.findall(source)]
    return found


def policy_cases(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """The shared decision table (``cases/authz.json``) every engine must answer alike."""
    root = Path(directory) if directory is not None else default_policy_dir()
    cases: list[dict[str, Any]] = json.loads(
        (root / "cases" / "authz.json").read_text(encoding="utf-8")
    )["cases"]
    return cases


def fixture_bundle(directory: str | Path | None = None) -> PolicyBundle:
    """The policies below ``directory`` (default: the shipped ones) with the policy tests'
    fixture application (``cases/app.json``) laid over their data."""
    root = Path(directory) if directory is not None else default_policy_dir()
    fixture = root / "cases" / "app.json"
    return PolicyBundle.from_directory(root, data=[fixture] if fixture.is_file() else [])


def bundle_with(
    overrides: Sequence[Sequence[Any]] | None = None, *, directory: str | Path | None = None
) -> PolicyBundle:
    """The fixture bundle with a case's ``[path, value]`` data overrides applied."""
    bundle = fixture_bundle(directory)
    for path, value in overrides or []:
        bundle.set(tuple(path), value)
    return bundle


def go_rego_class() -> type[Any] | None:
    """:class:`GoRego` if OPA's Go evaluator is installed, else ``None``."""
    try:
        import opa_bindings  # noqa: F401
    except ImportError:
        return None
    from tenancy.authz.golib import GoRego

    return GoRego


def run_policy_tests(directory: str | Path | None = None) -> list[PolicyTestResult]:
    """Run both suites on the policies below ``directory`` (default: the shipped ones)."""
    return [*_run_rego_unit(directory), *_run_case_table(directory)]


def _run_rego_unit(directory: str | Path | None) -> list[PolicyTestResult]:
    modules = rego_test_modules(directory)
    tests = rego_tests(modules)
    names = [f"{package}.{rule}" for package, rule in tests]
    go = go_rego_class()
    if go is None:
        return [PolicyTestResult(REGO_UNIT, n, "opa-go", Status.NOT_RUN, GO_MISSING) for n in names]
    try:
        engine = go(fixture_bundle(directory), include_tests=modules)
    except ConfigurationError as exc:
        return [PolicyTestResult(REGO_UNIT, n, "opa-go", Status.FAILED, str(exc)) for n in names]
    return [
        _outcome(REGO_UNIT, name, "opa-go", functools.partial(_rego_true, engine, name))
        for name in names
    ]


def _rego_true(engine: Any, name: str) -> str | None:
    result = engine.evaluate(name)
    return None if result is True else f"evaluated to {json.dumps(result)}, not true"


def _run_case_table(directory: str | Path | None) -> list[PolicyTestResult]:
    results = []
    for case in policy_cases(directory):

        def check(case: dict[str, Any] = case) -> str | None:
            decision = EmbeddedRego(bundle_with(case.get("data"), directory=directory)).decide(
                case["input"]
            )
            got = (decision.allow, list(decision.reasons))
            want = (case["allow"], case["reasons"])
            return None if got == want else f"expected {want}, got {got}"

        results.append(_outcome(CASE_TABLE, str(case["name"]), EmbeddedRego.name, check))
    return results


def _outcome(
    suite: str, name: str, engine: str, check: Callable[[], str | None]
) -> PolicyTestResult:
    try:
        problem = check()
    except Exception as exc:  # a crashing test is a failed test, reported with its error
        problem = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    status = Status.PASSED if problem is None else Status.FAILED
    return PolicyTestResult(suite, name, engine, status, problem or "")
