"""The zero-setup decision point: Rego evaluated in-process by ``regopy`` (rego-cpp).

The bundle is compiled once per revision (``Interpreter.build`` with the decision as
query), so a decision costs one evaluation of the prebuilt bundle. rego-cpp lacks some
OPA built-ins (``time.parse_rfc3339_ns`` among them) and crashes on ``with``, so the
shipped policies avoid both; ``*_test.rego`` files run on OPA itself, and shared case
tables check that every engine decides alike.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from tenancy.authz.bundle import PolicyBundle
from tenancy.authz.decision import Decision, decision_from
from tenancy.errors import ConfigurationError, DecisionUnavailable

DECISION_QUERY = "x = data.tenancy.authz.decision"


class EmbeddedRego:
    """A :class:`PolicyDecisionPoint` over ``regopy``; thread-safe (one evaluation at a
    time: the interpreter holds per-query state)."""

    name = "embedded-rego"

    def __init__(self, bundle: PolicyBundle, *, query: str = DECISION_QUERY) -> None:
        try:
            import regopy
        except ImportError as exc:  # pragma: no cover - regopy is a dependency
            raise ConfigurationError("the embedded engine needs the regopy package") from exc
        self._regopy = regopy
        self._bundle = bundle
        self._query = query
        self._lock = threading.Lock()
        self._load(bundle)  # refuses to start on a policy that does not compile
        bundle.subscribe(self._load)

    @property
    def revision(self) -> int:
        return self._revision

    def _load(self, bundle: PolicyBundle) -> None:
        regopy = self._regopy
        revision, data = bundle.snapshot()
        interpreter = regopy.Interpreter()
        try:
            for name, source in bundle.modules.items():
                interpreter.add_module(name, source)
            interpreter.add_data_json(json.dumps(data))
            compiled = interpreter.build(self._query)
        except regopy.RegoError as exc:
            raise ConfigurationError(f"policy bundle does not compile: {exc}") from exc
        with self._lock:
            if revision < getattr(self, "_revision", 0):
                return  # a newer change was loaded first; never go back to older data
            self._interpreter = interpreter
            self._compiled = compiled
            self._revision = revision

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Evaluate the decision for ``input``.

        Raises:
            DecisionUnavailable: evaluation failed or the result is undefined/malformed.
        """
        with self._lock:
            revision = self._revision
            try:
                self._interpreter.set_input(self._regopy.Input(dict(input)))
                output = self._interpreter.query_bundle(self._compiled)
            except self._regopy.RegoError as exc:
                raise DecisionUnavailable(f"embedded rego failed: {exc}") from exc
        return decision_from(_binding(output), revision=revision, engine=self.name)


def _binding(output: Any) -> Any:
    """The decision document, or ``None`` when undefined or ambiguous.

    Read from the output regopy already parsed: asking the native layer for the binding
    of an undefined result aborts the process (rego-cpp 1.5.2).
    """
    if not output.ok() or len(output.results) != 1:
        return None
    return output.results[0].bindings.get("x")
