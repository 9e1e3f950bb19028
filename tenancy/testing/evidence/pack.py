"""The pack itself: the ``tenancy.evidence`` document built from the inputs, its verdict
and reasons, and the JSON and HTML files it is written to.

Its own module because this is the judgement (what passes, fails or is incomplete); the
inputs it judges are gathered by the other modules of this package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tenancy.authz.policytests import PolicyTestResult, Status
from tenancy.testing.evidence.chains import ChainResult
from tenancy.testing.evidence.inputs import outcome_counts
from tenancy.testing.outcomes import DB_OUTCOMES, PROBE_OUTCOMES
from tenancy.testing.report import render_html

KIND = "tenancy.evidence"
VERSION = 1
_SHOWN = 5  # reasons name this many cells of one kind, then count the rest


class Verdict(StrEnum):
    """The pack's verdict: PASS, FAIL, or INCOMPLETE when evidence is missing."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    INCOMPLETE = "INCOMPLETE"


# -- the verdict ------------------------------------------------------------------------


def build_evidence(
    *,
    probe: Mapping[str, Any] | None,
    db_matrix: Mapping[str, Any] | None,
    audit: Sequence[ChainResult] | None,
    policy_tests: Sequence[PolicyTestResult] | None,
    versions: Mapping[str, Any],
    now: datetime,
    not_provided: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``tenancy.evidence`` document, judged. ``None`` marks an input not provided;
    ``not_provided`` may say why (``{"audit": "no database at ..."}``)."""
    given = {"probe": probe, "db_matrix": db_matrix, "audit": audit, "policy_tests": policy_tests}
    tests = (
        None
        if policy_tests is None
        else {
            "summary": {
                status.value: sum(r.status is status for r in policy_tests) for status in Status
            },
            "results": [r.to_json() for r in policy_tests],
        }
    )
    evidence: dict[str, Any] = {
        "kind": KIND,
        "version": VERSION,
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "verdict": Verdict.INCOMPLETE.value,
        "reasons": [],
        "versions": dict(versions),
        "probe": None if probe is None else dict(probe),
        "db_matrix": None if db_matrix is None else dict(db_matrix),
        "audit": None if audit is None else [c.to_json() for c in audit],
        "policy_tests": tests,
        "not_provided": {
            section: (not_provided or {}).get(section, "")
            for section, value in given.items()
            if value is None
        },
    }
    verdict, reasons = judge(evidence)
    evidence["verdict"], evidence["reasons"] = verdict.value, reasons
    return evidence


def judge(evidence: Mapping[str, Any]) -> tuple[Verdict, list[str]]:
    """The verdict and its reasons: failures first, then what is missing."""
    failures: list[str] = []
    missing = [
        f"{section.replace('_', ' ')}: not provided" + (f" ({why})" if why else "")
        for section, why in evidence.get("not_provided", {}).items()
    ]
    probe = evidence.get("probe")
    if probe is not None:
        if probe["void"]:
            why = "; ".join(map(str, probe["void_reasons"])) or "no reason given"
            failures.append(f"probe: void (a positive control failed): {why}")
        if not probe["cells"]:
            failures.append("probe: no cells were tested")
        failures += _named(
            probe,
            "leaked",
            "probe",
            lambda c: (
                f"{c['attack']} by {c.get('actor')} on {c['route']} against {c.get('victim')}"
            ),
        )
        if "summary" in probe and any(
            probe["summary"].get(k, 0) != v
            for k, v in outcome_counts(probe, PROBE_OUTCOMES).items()
        ):
            failures.append("probe: its summary does not match its cells")
    db = evidence.get("db_matrix")
    if db is not None:
        if not db["cells"]:
            failures.append("db matrix: no cells were tested")
        for outcome in ("leaked", "error"):
            failures += _named(
                db,
                outcome,
                "db matrix",
                lambda c: (
                    f"{c['operation']} on {c['table']} with setting "
                    f"{c['setting']}, target {c['target']}"
                ),
            )
        failures += [
            f"db matrix: finding {f.get('check')} on {f.get('subject')}: {f.get('message')}"
            for f in db["findings"]
        ]
        counted = {**outcome_counts(db, DB_OUTCOMES), "findings": len(db["findings"])}
        if "summary" in db and any(db["summary"].get(k, 0) != v for k, v in counted.items()):
            failures.append("db matrix: its summary does not match its cells")
    for chain in evidence.get("audit") or []:
        if not chain["ok"]:
            failures.append(
                f"audit: chain {chain['tenant']} broken: {chain['damage']} at "
                f"position {chain['position']} ({chain['detail']})"
            )
        elif not chain["records"]:
            # An empty chain verifies, but proves nothing: never written, or deleted
            # together with its head. Missing evidence never passes.
            missing.append(
                f"audit: chain {chain['tenant']} has no records: nothing to "
                "verify (never written, or deleted with its head)"
            )
    if evidence.get("audit") == []:
        missing.append("audit: no chain was verified")
    tests = evidence.get("policy_tests")
    if tests is not None:
        results = tests["results"]
        if not results:
            failures.append("policy tests: none found")
        failed = [r for r in results if r["status"] == Status.FAILED.value]
        failures += [
            f"policy test failed: {r['suite']} {r['name']} on {r['engine']}: {r['detail']}"
            for r in failed[:_SHOWN]
        ]
        if len(failed) > _SHOWN:
            failures.append(f"policy tests: {len(failed) - _SHOWN} more failed")
        skipped = [r for r in results if r["status"] == Status.NOT_RUN.value]
        for detail in sorted({r["detail"] for r in skipped}):
            count = sum(r["detail"] == detail for r in skipped)
            missing.append(f"policy tests: {count} not run: {detail}")
    if failures:
        return Verdict.FAIL, failures + missing
    return (Verdict.INCOMPLETE, missing) if missing else (Verdict.PASS, [])


def _named(
    document: Mapping[str, Any],
    outcome: str,
    label: str,
    describe: Callable[[Mapping[str, Any]], str],
) -> list[str]:
    cells = [c for c in document["cells"] if c["outcome"] == outcome]
    if not cells:
        return []
    named = [f"{label}: {outcome}: {describe(c)}" for c in cells[:_SHOWN]]
    more = f" ({len(cells) - _SHOWN} more not named here)" if len(cells) > _SHOWN else ""
    return [f"{label}: {len(cells)} {outcome} cell(s){more}", *named]


# -- output -----------------------------------------------------------------------------


def write_pack(evidence: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``evidence.json`` and ``evidence.html`` (rendered from that JSON's text)
    into ``out_dir``, created if needed; returns both paths.

    Raises:
        ConfigurationError: Jinja2 is not installed (``tenancy[kit]``); nothing is written.
    """
    folder = Path(out_dir)
    text = json.dumps(evidence, indent=2, ensure_ascii=False) + "\n"
    page = render_html(json.loads(text))  # before anything is written: all or nothing
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "evidence.json", folder / "evidence.html"
    json_path.write_text(text, encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path
