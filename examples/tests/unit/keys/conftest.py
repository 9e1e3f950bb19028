"""The library's key fixtures (``tests/unit/keys/conftest.py``), for the worklogs' tests."""

from tests.unit.keys.conftest import (  # noqa: F401  (fixtures)
    customer,
    platform,
    root,
    tenant_keys,
)
