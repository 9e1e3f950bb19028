"""The inputs from other tools: a ``tenancy.probe`` or ``tenancy.db-matrix`` document,
read and checked before anything is judged.

Its own module because these documents come from files a user names: every way they can
be wrong (missing, not JSON, another kind or version, a malformed cell) is refused here
with ``EvidenceInputError``, so the judgement never sees a document it cannot trust.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tenancy.errors import EvidenceInputError
from tenancy.testing.outcomes import DB_OUTCOMES, PROBE_KIND, PROBE_OUTCOMES


def load_input(path: str | Path, *, kind: str) -> dict[str, Any]:
    """Read and validate a ``tenancy.probe`` or ``tenancy.db-matrix`` document.

    Raises:
        EvidenceInputError: missing, unreadable, not JSON, or another kind or version.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvidenceInputError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise EvidenceInputError(f"{path}: not JSON: {exc}") from None
    try:
        return validate_input(document, kind=kind)
    except EvidenceInputError as exc:
        raise EvidenceInputError(f"{path}: {exc}") from None


def validate_input(document: Any, *, kind: str) -> dict[str, Any]:
    """Check the envelope and each cell's shape (lightly); returns ``document``.

    Raises:
        EvidenceInputError: the first problem found.
    """
    if not isinstance(document, dict) or document.get("kind") != kind:
        found = document.get("kind") if isinstance(document, dict) else type(document).__name__
        raise EvidenceInputError(f"expected a {kind} document, found {found!r}")
    if document.get("version") != 1:
        raise EvidenceInputError(
            f"{kind} version {document.get('version')!r} is not supported (expected 1)"
        )
    keys: tuple[str, ...]
    outcomes: tuple[str, ...]
    if kind == PROBE_KIND:
        keys, outcomes = ("route", "attack", "outcome"), PROBE_OUTCOMES
        _need(document, "void", bool)
        _need(document, "void_reasons", list)
    else:
        keys, outcomes = ("table", "operation", "setting", "target", "outcome"), DB_OUTCOMES
        _need(document, "findings", list)
    _need(document, "cells", list)
    for index, cell in enumerate(document["cells"]):
        if not isinstance(cell, dict) or not all(isinstance(cell.get(k), str) for k in keys):
            raise EvidenceInputError(f"cell {index}: needs string fields {', '.join(keys)}")
        if cell["outcome"] not in outcomes:
            raise EvidenceInputError(
                f"cell {index}: outcome {cell['outcome']!r} is not one of {', '.join(outcomes)}"
            )
    return document


def _need(document: Mapping[str, Any], key: str, kind: type) -> None:
    if not isinstance(document.get(key), kind):
        raise EvidenceInputError(f"field {key!r} is missing or not a {kind.__name__}")


def outcome_counts(document: Mapping[str, Any], outcomes: Sequence[str]) -> dict[str, int]:
    """How many cells ended in each outcome, recounted from the cells themselves."""
    counted = Counter(cell["outcome"] for cell in document["cells"])
    return {outcome: counted.get(outcome, 0) for outcome in outcomes}
