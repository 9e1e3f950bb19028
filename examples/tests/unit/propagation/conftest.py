"""The library's propagation fixtures (``tests/unit/propagation/conftest.py``), for the
edge and worklogs pair."""

from tests.unit.propagation.conftest import (  # noqa: F401  (fixtures)
    acme_ctx,
    ctx_verifier,
    edge_ring,
    minter,
    replay_guard,
)
