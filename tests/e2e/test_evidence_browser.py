"""The evidence pack's HTML report in a real headless Chromium, opened from its file.

The report is built from a broken probe (one leaked cell), a database matrix with a
finding, real audit chains and fixed policy results, written to disk as ``tenancy
evidence pack`` writes it, and opened over ``file://``: what a reviewer sees is what
the test asserts, and the page may fetch nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenancy.audit import PLATFORM_CHAIN
from tenancy.testing.evidence import ChainResult, build_evidence, collect_versions, write_pack
from tests.support.browser import chromium_page, ensure_chromium
from tests.unit.testing.documents import LEAK, db_matrix, policy_results, probe

pytestmark = pytest.mark.e2e


@pytest.fixture
def report(tmp_path: Path) -> Path:
    ensure_chromium()  # skip (or fail in CI) before building anything
    db = db_matrix(finding=True)
    evidence = build_evidence(
        probe=probe(leaked=True),
        db_matrix=db,
        audit=[
            ChainResult("acme", "t-acme", True, 3),
            ChainResult(
                "globex", "t-globex", False, 3, 2, "changed", "content does not match its hash"
            ),
            ChainResult(PLATFORM_CHAIN, PLATFORM_CHAIN, True, 1),
        ],
        policy_tests=policy_results(),
        versions=collect_versions(db_matrix=db),
        now=datetime.now(UTC),
    )
    return write_pack(evidence, tmp_path / "pack")[1]


def test_report_shows_verdict_matrices_and_chart_and_fetches_nothing(report: Path) -> None:
    url = report.resolve().as_uri()
    with chromium_page() as page:
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url, wait_until="load")

        verdict = page.locator("#verdict")
        assert verdict.is_visible() and verdict.inner_text() == "Verdict: FAIL"
        reasons = page.locator("#reasons li").all_inner_texts()
        assert "probe: 1 leaked cell(s)" in reasons
        assert any(
            r.startswith("audit: chain globex broken: changed at position 2") for r in reasons
        )
        assert any(r.startswith("db matrix: finding rls-policy-always-true") for r in reasons)

        # Tables are found by their accessible names, which come from their captions.
        probe_table = page.get_by_role("table", name="Probe matrix: cells per route and attack")
        assert probe_table.is_visible()
        assert probe_table.locator("caption").is_visible()
        assert probe_table.get_by_role("rowheader", name="GET /worklogs/{id}").is_visible()
        assert probe_table.get_by_role("columnheader", name="tenant-header").is_visible()
        db_table = page.get_by_role(
            "table", name="Database matrix: every cell by table, operation, setting and target"
        )
        assert db_table.is_visible() and db_table.locator("caption").is_visible()
        assert db_table.locator("tbody tr").count() == len(db_matrix()["cells"])

        leaked = page.get_by_role(
            "table", name="Probe cells that were not enforced: leaked, error or skipped"
        ).locator("tbody tr")
        assert leaked.count() == 1 and leaked.first.is_visible()
        row = leaked.first.locator("td").all_inner_texts()
        assert row[:5] == ["leaked", LEAK["route"], LEAK["victim"], LEAK["attack"], LEAK["actor"]]

        chart = page.locator("svg#summary-chart")
        box = chart.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
        assert chart.locator("title#chart-title").text_content() == (
            "Outcomes of the HTTP probe and the database matrix"
        )
        leaked_bar = chart.locator("rect.bar-leaked").first.bounding_box()
        assert leaked_bar is not None and leaked_bar["width"] > 0 and leaked_bar["height"] > 0
        labels = chart.locator("text").all_text_contents()
        assert {"HTTP probe", "Database matrix", "enforced", "leaked", "vacuous"} <= set(labels)

        assert page.evaluate("document.scripts.length") == 0
        assert page.evaluate("performance.getEntriesByType('resource').length") == 0
    assert requested == [url]
