"""The one interface every decision engine implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from tenancy.authz.decision import Decision


@runtime_checkable
class PolicyDecisionPoint(Protocol):
    """Decides ``data.tenancy.authz.decision`` for an input document.

    ``decide`` may block (network, CPU); callers run it off the event loop. It returns a
    validated :class:`Decision` or raises ``DecisionUnavailable``: never a bare boolean,
    never an allow by default.
    """

    name: str

    @property
    def revision(self) -> int:
        """The policy data revision decisions are currently made under."""

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Evaluate the policy for ``input``; may block, so run it off the event loop.

        Raises:
            DecisionUnavailable: the engine failed, or its answer is undefined or
                malformed (it never turns into an allow).
        """
