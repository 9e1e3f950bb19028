"""The zero-setup decision point: Rego evaluated in-process by ``regopy`` (rego-cpp).

The bundle is compiled once per revision (``Interpreter.build`` with the decision as
query), so a decision costs one evaluation of the prebuilt bundle. rego-cpp lacks some
OPA built-ins (``time.parse_rfc3339_ns`` among them) and crashes on ``with``, so the
shipped policies avoid both; ``*_test.rego`` files run on OPA itself, and shared case
tables check that every engine decides alike.

rego-cpp by default swallows a built-in's runtime error (``1 / 0``, ``count(5)``) and
goes on, so an erring policy could answer a plain deny (or an allow, if the error sat
under a ``not``). The interpreter is built with strict built-in errors instead: any
runtime error is ``DecisionUnavailable``, as on OPA. Input it could not read exactly
(NUL, lone surrogates, integers past 64 bits) is refused before it is handed over
(:mod:`tenancy.authz.representable`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from tenancy.authz.bundle import PolicyBundle
from tenancy.authz.decision import Decision, decision_from
from tenancy.authz.representable import check_representable
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
        """The bundle revision the loaded policy data came from: decisions report it, and
        the decision cache refuses decisions older than its latest invalidation."""
        return self._revision

    def _load(self, bundle: PolicyBundle) -> None:
        regopy = self._regopy
        revision, data = bundle.snapshot()
        interpreter = regopy.Interpreter()
        interpreter.strict_built_in_errors = True  # an erring rule is no decision, not a deny
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
            DecisionUnavailable: the input holds a value rego-cpp cannot read exactly,
                evaluation raised or hit a runtime error, or the result is undefined or
                malformed.
        """
        check_representable(input)
        with self._lock:
            revision = self._revision
            try:
                self._interpreter.set_input(self._regopy.Input(dict(input)))
                output = self._interpreter.query_bundle(self._compiled)
                document = _binding(output)
            except DecisionUnavailable:
                raise
            except Exception as exc:  # RegoError, or regopy failing to read its own output
                raise DecisionUnavailable(
                    f"embedded rego failed: {type(exc).__name__}: {_short(exc)}"
                ) from exc
        return decision_from(
            document, revision=revision, engine=self.name, bundle=self._bundle.bundle_revision
        )


def _binding(output: Any) -> Any:
    """The decision document, or ``None`` when undefined or ambiguous.

    Read from the output regopy already parsed: asking the native layer for the binding
    of an undefined result aborts the process (rego-cpp 1.5.2).

    Raises:
        DecisionUnavailable: evaluation ended in an error (with strict built-in errors,
            any runtime error of the policy).
    """
    if not output.ok():
        # regopy exposes no message for it (its output text is just "<error>").
        raise DecisionUnavailable("embedded rego evaluation ended in a runtime error")
    if len(output.results) != 1:
        return None
    return output.results[0].bindings.get("x")


def _short(value: object) -> str:
    return ascii(" ".join(str(value).split())[:200])
