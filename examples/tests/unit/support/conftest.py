"""The library's support fixtures (``tests/unit/support/conftest.py``), for the console
and the edge."""

from tests.unit.support.conftest import notices, support  # noqa: F401  (fixtures)
