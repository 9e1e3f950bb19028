"""The evidence pack as one self-contained HTML page, rendered from its JSON alone.

The page has inline CSS, an inline SVG chart and no script or external resource, so it
can be archived and opened anywhere. Every value goes through Jinja2's autoescaping:
a route, a detail or a tenant name holding markup shows as text. Jinja2 comes with the
isolation kit's extra (``pip install 'tenancy[kit]'``); without it rendering refuses
with a :class:`~tenancy.errors.ConfigurationError` naming that extra.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tenancy.errors import ConfigurationError
from tenancy.testing.outcomes import DB_OUTCOMES, PROBE_OUTCOMES

if TYPE_CHECKING:
    from jinja2 import Environment

_OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")
_SEVERITY = {"leaked": 0, "error": 1, "vacuous": 2, "skipped": 3, "denied": 4, "enforced": 5}
_CHART_WIDTH, _LABEL_WIDTH, _BAR_WIDTH, _ROW, _GAP = 640, 120, 420, 24, 30


def ensure_renderer() -> None:
    """Check that the report can be rendered, before any work is done for it.

    Raises:
        ConfigurationError: Jinja2 is not installed (the ``kit`` extra).
    """
    _environment()


@functools.cache
def _environment() -> Environment:
    try:
        from jinja2 import Environment, PackageLoader
    except ImportError as exc:
        raise ConfigurationError(
            "the evidence report needs Jinja2: pip install 'tenancy[kit]'"
        ) from exc
    # Autoescaping is on for every value; ``None`` (a cell without a victim) shows empty.
    return Environment(
        loader=PackageLoader("tenancy.testing", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_blank_none,
    )


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


def render_html(evidence: Mapping[str, Any]) -> str:
    """The report of a ``tenancy.evidence`` document (as written to ``evidence.json``).

    Raises:
        ConfigurationError: Jinja2 is not installed (the ``kit`` extra).
    """
    probe, db = evidence.get("probe"), evidence.get("db_matrix")
    return (
        _environment()
        .get_template("evidence.html")
        .render(
            evidence=evidence,
            probe=None if probe is None else _probe_view(probe),
            db=None if db is None else _db_view(db),
            chart=_chart(probe, db),
            not_provided=evidence.get("not_provided", {}),
        )
    )


def _counts(cells: Sequence[Mapping[str, Any]], outcomes: Sequence[str]) -> dict[str, int]:
    found = Counter(cell["outcome"] for cell in cells)
    return {outcome: found.get(outcome, 0) for outcome in outcomes}


def _ordered(declared: Sequence[str], seen: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*declared, *seen]))


def _grid_text(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "not tested"
    if counts.get("enforced", 0) == total:
        return f"{total} enforced"
    parts = sorted((k for k, v in counts.items() if v), key=lambda k: _SEVERITY[k])
    return ", ".join(f"{counts[k]} {k}" for k in parts)


def _worst(counts: Mapping[str, int]) -> str:
    present = [k for k, v in counts.items() if v]
    return min(present, key=lambda k: _SEVERITY[k]) if present else "none"


def _probe_view(probe: Mapping[str, Any]) -> dict[str, Any]:
    cells = probe["cells"]
    routes = _ordered(probe.get("routes", []), [c["route"] for c in cells])
    attacks = _ordered([], [c["attack"] for c in cells])
    by_pair: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_route: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for cell in cells:
        by_pair[cell["route"], cell["attack"]].append(cell)
        by_route[cell["route"]].append(cell)
    rows = []
    for route in routes:
        grid = []
        for attack in attacks:
            counts = _counts(by_pair[route, attack], PROBE_OUTCOMES)
            grid.append({"text": _grid_text(counts), "worst": _worst(counts)})
        totals = _counts(by_route[route], PROBE_OUTCOMES)
        rows.append({"route": route, "grid": grid, "totals": totals, "worst": _worst(totals)})
    flagged = sorted(
        (c for c in cells if c["outcome"] != "enforced"),
        key=lambda c: (
            _SEVERITY[c["outcome"]],
            c["route"],
            c["attack"],
            str(c.get("victim")),
            str(c.get("actor")),
        ),
    )
    controls = sorted(probe.get("controls", []), key=lambda c: bool(c.get("ok")))
    return {
        "doc": probe,
        "counts": _counts(cells, PROBE_OUTCOMES),
        "total": len(cells),
        "attacks": attacks,
        "rows": rows,
        "flagged": flagged,
        "controls": controls,
        "failed_controls": sum(not c.get("ok") for c in controls),
    }


def _db_view(db: Mapping[str, Any]) -> dict[str, Any]:
    cells = db["cells"]
    operation = {name: index for index, name in enumerate(_OPERATIONS)}
    ordered = sorted(
        cells,
        key=lambda c: (
            c["table"],
            operation.get(c["operation"], 9),
            c["setting"] != "none",
            c["setting"],
            c["target"],
        ),
    )
    tables = _ordered(db.get("tables", []), [c["table"] for c in cells])
    per_table = []
    for table in tables:
        counts = _counts([c for c in cells if c["table"] == table], DB_OUTCOMES)
        per_table.append({"table": table, "counts": counts, "worst": _worst(counts)})
    return {
        "doc": db,
        "counts": _counts(cells, DB_OUTCOMES),
        "total": len(cells),
        "cells": ordered,
        "per_table": per_table,
        "findings": db.get("findings", []),
    }


def _chart(probe: Mapping[str, Any] | None, db: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Bar geometry for the summary chart: one group per matrix, one bar per outcome,
    lengths to scale within the group (a non-zero count is always visible)."""
    groups = []
    y = 0
    for label, document, outcomes in (
        ("HTTP probe", probe, PROBE_OUTCOMES),
        ("Database matrix", db, DB_OUTCOMES),
    ):
        if document is None:
            continue
        counts = _counts(document["cells"], outcomes)
        top = max(counts.values()) or 1
        y += _GAP
        bars = []
        heading_y = y - 8
        for outcome in outcomes:
            width = round(_BAR_WIDTH * counts[outcome] / top)
            if counts[outcome]:
                width = max(width, 3)
            bars.append(
                {
                    "outcome": outcome,
                    "count": counts[outcome],
                    "y": y,
                    "width": width,
                    "text_y": y + _ROW * 0.5 + 5,
                    "count_x": _LABEL_WIDTH + width + 6,
                }
            )
            y += _ROW
        groups.append({"label": label, "heading_y": heading_y, "bars": bars})
    if not groups:
        return None
    return {
        "width": _CHART_WIDTH,
        "height": y + 10,
        "label_width": _LABEL_WIDTH,
        "bar_height": _ROW - 6,
        "groups": groups,
    }
