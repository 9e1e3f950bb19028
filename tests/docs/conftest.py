"""The docs tests' markers (see test_docs.py for the convention)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docs: a README or docs page block, run as written")
    config.addinivalue_line(
        "markers", "bench: runs a benchmark (shortened by the block's docs-test args)"
    )
