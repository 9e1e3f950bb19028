"""The isolation evidence pack: every proof of isolation gathered into one judged JSON.

Inputs: the HTTP probe matrix (``tenancy probe --out``), the database access matrix with
the RLS auditor's findings (``tenancy db matrix --json``), each audit chain's
verification, and the shipped policies' test results. :func:`build_evidence` judges them:

- ``PASS`` only if the probe is not void and leaked nothing, the database matrix has no
  leaked or error cell and no finding, every audit chain verifies and every policy test
  passed;
- ``FAIL`` if any of those is false, with every reason listed;
- ``INCOMPLETE`` if nothing failed but an input is missing or a test could not run:
  missing evidence is never a pass.

The HTML report (:func:`tenancy.testing.report.render_html`) is rendered from the JSON
document alone, so the JSON is exactly what the report shows.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from tenancy.audit import VerifyResult
from tenancy.authz import PolicyBundle
from tenancy.authz.policytests import PolicyTestResult, Status
from tenancy.errors import EvidenceInputError
from tenancy.testing.outcomes import DB_MATRIX_KIND, DB_OUTCOMES, PROBE_KIND, PROBE_OUTCOMES
from tenancy.testing.report import render_html

__all__ = [
    "DB_MATRIX_KIND",
    "DB_OUTCOMES",
    "KIND",
    "LIBRARIES",
    "PROBE_KIND",
    "PROBE_OUTCOMES",
    "VERSION",
    "ChainResult",
    "ChainVerifier",
    "EvidenceInputError",
    "Verdict",
    "build_evidence",
    "bundle_digest",
    "collect_versions",
    "judge",
    "load_input",
    "outcome_counts",
    "validate_input",
    "verify_chains",
    "write_pack",
]

KIND = "tenancy.evidence"
VERSION = 1
LIBRARIES = (
    "starlette",
    "sqlalchemy",
    "cryptography",
    "pyjwt",
    "jinja2",
    "regopy",
    "opa-golib-python-bindings",
)
_SHOWN = 5  # reasons name this many cells of one kind, then count the rest


class Verdict(StrEnum):
    """The pack's verdict: PASS, FAIL, or INCOMPLETE when evidence is missing."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    INCOMPLETE = "INCOMPLETE"


# -- inputs ----------------------------------------------------------------------------


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


# -- audit chains -------------------------------------------------------------------------


class ChainVerifier(Protocol):
    """Anything that verifies one tenant's audit chain (``AuditLog`` does)."""

    def verify(self, tenant_id: str) -> VerifyResult:
        """Verify the tenant's chain: records, hashes and the signed head."""
        ...


@dataclass(frozen=True, slots=True)
class ChainResult:
    """One audit chain's verification: ``position`` and ``damage`` name the first fault."""

    tenant: str
    tenant_id: str
    ok: bool
    records: int
    position: int | None = None
    damage: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The result as it appears in ``evidence.json``."""
        return {
            "tenant": self.tenant,
            "tenant_id": self.tenant_id,
            "ok": self.ok,
            "records": self.records,
            "position": self.position,
            "damage": self.damage,
            "detail": self.detail,
        }


def verify_chains(log: ChainVerifier, chains: Iterable[tuple[str, str]]) -> list[ChainResult]:
    """Verify each ``(label, tenant_id)`` chain with ``log`` (an ``AuditLog``)."""
    results = []
    for label, tenant_id in chains:
        found = log.verify(tenant_id)
        results.append(
            ChainResult(
                label,
                tenant_id,
                found.ok,
                found.records,
                found.position,
                None if found.damage is None else str(found.damage),
                found.detail,
            )
        )
    return results


# -- versions ---------------------------------------------------------------------------


def bundle_digest(bundle: PolicyBundle) -> str:
    """``sha256:`` over the bundle's modules and data, canonically encoded."""
    _, data = bundle.snapshot()
    canonical = json.dumps(
        {"modules": bundle.modules, "data": data},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def collect_versions(
    *, bundle: PolicyBundle | None = None, db_matrix: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """tenancy's, Python's and the key libraries' versions, the policy bundle's revision
    and digest, and the PostgreSQL server's version when the database matrix has it."""
    bundle = bundle if bundle is not None else PolicyBundle.from_directory()
    return {
        "tenancy": _version("tenancy"),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "libraries": {name: _version(name) for name in LIBRARIES},
        "policy_bundle": {"revision": bundle.revision, "digest": bundle_digest(bundle)},
        "postgresql": None if db_matrix is None else db_matrix.get("server_version"),
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


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
