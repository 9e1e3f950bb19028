"""The matrix as data: cells, outcomes, and the versioned ``tenancy.db-matrix`` JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from tenancy.errors import MatrixError
from tenancy.scoping.audit import Finding

KIND = "tenancy.db-matrix"
VERSION = 1
NONE = "none"  # setting: set to '' in the transaction (what a pooled session shows later)
UNSET = "unset"  # setting: never set at all (NULL), in a brand-new session
OWN = "own"
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")
LOCK_TIMEOUT = "5s"  # a cell waiting on live traffic's row locks errors instead of blocking it


class Outcome(StrEnum):
    """What one cell proved. ``enforced`` and ``denied`` pass; ``vacuous`` proves nothing."""

    ENFORCED = "enforced"
    DENIED = "denied"
    LEAKED = "leaked"
    VACUOUS = "vacuous"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Cell:
    """One attempt: ``operation`` on ``table`` under ``setting`` against ``target``'s rows.

    ``setting`` is a tenant id, ``"none"`` (the tenant setting set to ``''`` in the
    transaction) or ``"unset"`` (a brand-new session where it was never set: NULL, which a
    policy can treat differently from ``''``); both no-tenant kinds have ``target ==
    "none"``. ``rows`` counts the rows seen or written (own rows for ``target == "own"``);
    None when the statement was refused or not run.
    """

    table: str
    operation: str
    setting: str
    target: str
    outcome: Outcome
    rows: int | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The cell as a JSON object of the ``tenancy.db-matrix`` document (outcome as its
        string value)."""
        return {
            "table": self.table,
            "operation": self.operation,
            "setting": self.setting,
            "target": self.target,
            "outcome": str(self.outcome),
            "rows": self.rows,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class DatabaseMatrix:
    """The whole matrix plus the auditor's findings; versioned JSON for evidence packs."""

    generated_at: datetime
    database: str
    role: str
    server_version: str
    tenants: tuple[str, ...]
    tables: tuple[str, ...]
    cells: tuple[Cell, ...]
    findings: tuple[Finding, ...]

    @property
    def summary(self) -> dict[str, int]:
        """The number of cells per outcome (every outcome present, zero included) and the
        number of audit findings."""
        counts = Counter(cell.outcome for cell in self.cells)
        return {**{str(o): counts[o] for o in Outcome}, "findings": len(self.findings)}

    @property
    def ok(self) -> bool:
        """No leak, no error and no audit finding: the only state that proves isolation."""
        summary = self.summary
        return not (summary["leaked"] or summary["error"] or summary["findings"])

    def to_json(self) -> dict[str, Any]:
        """The versioned JSON document (``kind: tenancy.db-matrix``, version 1) for evidence
        packs, with the summary computed."""
        return {
            "kind": KIND,
            "version": VERSION,
            "generated_at": self.generated_at.isoformat(),
            "database": self.database,
            "role": self.role,
            "server_version": self.server_version,
            "tenants": list(self.tenants),
            "tables": list(self.tables),
            "cells": [c.to_json() for c in self.cells],
            "findings": [
                {"check": f.check, "subject": f.subject, "message": f.message}
                for f in self.findings
            ],
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatabaseMatrix:
        """Read :meth:`to_json` output back. Raises MatrixError on another kind or version."""
        if data.get("kind") != KIND or data.get("version") != VERSION:
            raise MatrixError(f"not a {KIND} version {VERSION} document")
        try:
            return cls(
                datetime.fromisoformat(data["generated_at"]),
                data["database"],
                data["role"],
                data["server_version"],
                tuple(data["tenants"]),
                tuple(data["tables"]),
                tuple(
                    Cell(
                        c["table"],
                        c["operation"],
                        c["setting"],
                        c["target"],
                        Outcome(c["outcome"]),
                        c["rows"],
                        c["detail"],
                    )
                    for c in data["cells"]
                ),
                tuple(Finding(f["check"], f["subject"], f["message"]) for f in data["findings"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MatrixError(f"malformed {KIND} document: {exc!r}") from None
