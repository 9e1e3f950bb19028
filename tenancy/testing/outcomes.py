"""The input documents the evidence pack reads: their kinds and the outcomes a cell may
hold, in the order reports show them.

Shared by :mod:`tenancy.testing.evidence` (which judges them) and
:mod:`tenancy.testing.report` (which renders them), so neither imports the other's
internals.
"""

from __future__ import annotations

PROBE_KIND = "tenancy.probe"
DB_MATRIX_KIND = "tenancy.db-matrix"
PROBE_OUTCOMES = ("enforced", "leaked", "error", "skipped")
DB_OUTCOMES = ("enforced", "denied", "leaked", "vacuous", "error")

__all__ = ["DB_MATRIX_KIND", "DB_OUTCOMES", "PROBE_KIND", "PROBE_OUTCOMES"]
