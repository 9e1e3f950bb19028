"""OPA's own Go evaluator in-process (``opa-golib-python-bindings``): real OPA semantics.

Not a default dependency: its metadata asks for Python >= 3.14 although the wheel is
``py3-none`` and runs on 3.11 (``pip install --ignore-requires-python
opa-golib-python-bindings``, which ``make test`` does). The project uses it as the
reference engine: ``*_test.rego`` run on it, and every shared case table is replayed on
it beside the default engine.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from tenancy.authz.bundle import PolicyBundle
from tenancy.authz.decision import Decision, decision_from
from tenancy.authz.representable import check_representable
from tenancy.errors import ConfigurationError, DecisionUnavailable

DECISION_PATH = "tenancy.authz.decision"


class GoRego:
    """A :class:`PolicyDecisionPoint` over OPA's Go ``rego`` package."""

    name = "opa-go"

    def __init__(
        self,
        bundle: PolicyBundle,
        *,
        path: str = DECISION_PATH,
        include_tests: dict[str, str] | None = None,
    ) -> None:
        try:
            from opa_bindings import OpaEngine, OpaError, OpaUndefinedError
        except ImportError as exc:
            raise ConfigurationError(
                "GoRego needs opa-golib-python-bindings "
                "(pip install --ignore-requires-python opa-golib-python-bindings)"
            ) from exc
        self._engine_type = OpaEngine
        self._error = OpaError
        self._undefined = OpaUndefinedError
        self._path = path
        self._tests = dict(include_tests or {})
        self._lock = threading.Lock()
        self._bundle_revision = bundle.bundle_revision
        self._load(bundle)
        bundle.subscribe(self._load)

    @property
    def revision(self) -> int:
        """The bundle revision the loaded policy data came from: decisions report it, and
        the decision cache refuses decisions older than its latest invalidation."""
        return self._revision

    def _load(self, bundle: PolicyBundle) -> None:
        revision, data = bundle.snapshot()
        engine = self._engine_type()
        try:
            for name, source in {**bundle.modules, **self._tests}.items():
                engine.add_policy(name, source)
            engine.add_data(data)
        except self._error as exc:
            engine.close()
            raise ConfigurationError(f"policy bundle does not compile: {exc}") from exc
        with self._lock:
            if revision < getattr(self, "_revision", 0):
                stale, old = engine, None  # a newer change was loaded first
            else:
                stale, old = None, getattr(self, "_engine", None)
                self._engine = engine
                self._revision = revision
        for leftover in (stale, old):
            if leftover is not None:
                leftover.close()

    def evaluate(self, path: str, input: Mapping[str, Any] | None = None) -> Any:
        """The document at ``data.<path>`` (``None`` if undefined); for policy tests."""
        with self._lock:
            try:
                return self._engine.eval_document(path, None if input is None else dict(input))
            except self._undefined:
                return None

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Evaluate the decision for ``input``.

        Raises:
            DecisionUnavailable: the input holds a value some engine cannot read exactly
                (refused here too, so every engine answers such input alike), evaluation
                failed, or the result is undefined or malformed.
        """
        check_representable(input)
        with self._lock:
            revision = self._revision
            try:
                result = self._engine.eval_document(self._path, dict(input))
            except self._undefined:
                result = None
            except self._error as exc:
                raise DecisionUnavailable(f"opa evaluation failed: {exc.code}") from exc
            except (TypeError, ValueError) as exc:  # input or answer that is not JSON
                raise DecisionUnavailable(f"opa evaluation failed: {type(exc).__name__}") from exc
        return decision_from(
            result, revision=revision, engine=self.name, bundle=self._bundle_revision
        )
