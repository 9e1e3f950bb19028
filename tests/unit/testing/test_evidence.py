"""The evidence pack: its verdict, its escaping, its policy test runner and its CLI."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tenancy.audit import PLATFORM_CHAIN, AuditLog
from tenancy.authz import default_policy_dir
from tenancy.authz import policytests as policytests_module
from tenancy.authz.policytests import Status, run_policy_tests
from tenancy.cli import main
from tenancy.testing.evidence import (
    DB_MATRIX_KIND,
    PROBE_KIND,
    ChainResult,
    EvidenceInputError,
    build_evidence,
    collect_versions,
    load_input,
    verify_chains,
    write_pack,
)
from tenancy.testing.report import render_html
from tests.unit.testing import documents
from tests.unit.testing.documents import db_matrix, policy_results, probe, with_cell

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
KEY = bytes(range(32))
OK_CHAINS = [
    ChainResult("acme", "t-acme", True, 3),
    ChainResult("globex", "t-globex", True, 3),
    ChainResult(PLATFORM_CHAIN, PLATFORM_CHAIN, True, 1),
]
VERSIONS = {
    "tenancy": "0.1.0",
    "python": "3.11.7 (CPython)",
    "libraries": {"pyjwt": "2.13"},
    "policy_bundle": {"revision": 1, "digest": "sha256:00"},
    "postgresql": "15.19",
}


def evidence(**overrides: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "probe": probe(),
        "db_matrix": db_matrix(),
        "audit": OK_CHAINS,
        "policy_tests": policy_results(),
        "versions": VERSIONS,
        "now": NOW,
    }
    return build_evidence(**{**inputs, **overrides})


# -- the verdict --------------------------------------------------------------------------


def test_healthy_inputs_pass() -> None:
    found = evidence()
    assert (found["verdict"], found["reasons"]) == ("PASS", [])
    assert found["kind"] == "tenancy.evidence" and found["version"] == 1
    assert found["generated_at"] == "2026-05-10T12:00:00+00:00"
    assert found["probe"] == probe() and found["db_matrix"] == db_matrix()
    assert found["policy_tests"]["summary"] == {"passed": 4, "failed": 0, "not run": 0}


def test_leaked_probe_cell_fails_naming_the_cell() -> None:
    found = evidence(probe=probe(leaked=True))
    assert found["verdict"] == "FAIL"
    assert found["reasons"][0] == "probe: 1 leaked cell(s)"
    assert (
        "probe: leaked: tenant-header by acme-member on GET /worklogs/{id} against globex"
    ) in found["reasons"]


def test_void_probe_fails_even_without_a_leak() -> None:
    found = evidence(probe=probe(void=True))
    assert found["verdict"] == "FAIL"
    assert found["reasons"] == [
        "probe: void (a positive control failed): acme-admin could "
        "not read its own GET /worklogs/{id} (403)"
    ]


def test_summary_that_hides_a_leak_or_finding_fails() -> None:
    lying = probe(leaked=True)
    lying["summary"] = probe()["summary"]
    assert "probe: its summary does not match its cells" in evidence(probe=lying)["reasons"]
    hiding = db_matrix(finding=True)
    hiding["summary"] = db_matrix()["summary"]
    assert (
        "db matrix: its summary does not match its cells" in evidence(db_matrix=hiding)["reasons"]
    )


def test_db_finding_fails_naming_the_check() -> None:
    found = evidence(db_matrix=db_matrix(finding=True))
    assert found["verdict"] == "FAIL"
    assert found["reasons"] == [
        "db matrix: finding rls-policy-always-true on "
        "public.tenancy_exports: policy p_all USING (true) admits "
        "every row"
    ]


@pytest.mark.parametrize("outcome", ["leaked", "error"])
def test_db_leaked_or_error_cell_fails(outcome: str) -> None:
    found = evidence(db_matrix=with_cell(db_matrix(), outcome=outcome, detail="boom"))
    assert found["verdict"] == "FAIL"
    assert found["reasons"][-1] == "db matrix: its summary does not match its cells"
    assert found["reasons"][:2] == [
        f"db matrix: 1 {outcome} cell(s)",
        f"db matrix: {outcome}: SELECT on public.worklogs with setting none, target none",
    ]


def test_vacuous_and_denied_db_cells_do_not_fail() -> None:
    outcomes = {c["outcome"] for c in db_matrix()["cells"]}
    assert outcomes == {"enforced", "denied", "vacuous"}
    assert evidence()["verdict"] == "PASS"


def test_empty_matrices_prove_nothing() -> None:
    empty_probe, empty_db = probe(), db_matrix()
    empty_probe["cells"], empty_db["cells"] = [], []
    del empty_probe["summary"], empty_db["summary"]
    found = evidence(probe=empty_probe, db_matrix=empty_db)
    assert found["verdict"] == "FAIL"
    assert found["reasons"] == ["probe: no cells were tested", "db matrix: no cells were tested"]


def test_tampered_audit_chain_fails_with_position_and_damage(engine: Engine) -> None:
    documents.write_chains(engine, KEY, ["t-acme", "t-globex"])
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE tenancy_audit_events SET actor = 'mallory' "
                "WHERE tenant_id = 't-acme' AND seq = 2"
            )
        )
    log = AuditLog(engine, KEY)
    try:
        chains = verify_chains(
            log, [("acme", "t-acme"), ("globex", "t-globex"), (PLATFORM_CHAIN, PLATFORM_CHAIN)]
        )
    finally:
        log.close()
    assert [(c.tenant, c.ok, c.records, c.position, c.damage) for c in chains] == [
        ("acme", False, 3, 2, "changed"),
        ("globex", True, 3, None, None),
        (PLATFORM_CHAIN, True, 1, None, None),
    ]
    found = evidence(audit=chains)
    assert found["verdict"] == "FAIL"
    assert found["reasons"] == [
        "audit: chain acme broken: changed at position 2 (content does not match its hash)"
    ]
    assert found["audit"][0] == {
        "tenant": "acme",
        "tenant_id": "t-acme",
        "ok": False,
        "records": 3,
        "position": 2,
        "damage": "changed",
        "detail": "content does not match its hash",
    }


def test_a_tenant_chain_deleted_with_its_head_is_not_a_pass(engine: Engine) -> None:
    documents.write_chains(engine, KEY, ["t-acme", "t-globex"])
    with engine.begin() as conn:  # an attacker with SQL access removes all of acme's trail
        for table in ("tenancy_audit_events", "tenancy_audit_heads"):
            conn.execute(text(f"DELETE FROM {table} WHERE tenant_id = 't-acme'"))
    log = AuditLog(engine, KEY)
    try:
        chains = verify_chains(
            log, [("acme", "t-acme"), ("globex", "t-globex"), (PLATFORM_CHAIN, PLATFORM_CHAIN)]
        )
    finally:
        log.close()
    assert (chains[0].tenant, chains[0].ok, chains[0].records) == ("acme", True, 0)
    found = evidence(audit=chains)
    assert found["verdict"] == "INCOMPLETE"
    assert found["reasons"] == [
        "audit: chain acme has no records: nothing to verify "
        "(never written, or deleted with its head)"
    ]


def test_failing_policy_test_fails() -> None:
    found = evidence(policy_tests=policy_results(failing=True))
    assert found["verdict"] == "FAIL"
    assert found["reasons"] == [
        "policy test failed: rego-unit tenancy.authz_test.test_1 on "
        "opa-go: evaluated to false, not true"
    ]


@pytest.mark.parametrize("missing", ["probe", "db_matrix", "audit", "policy_tests"])
def test_missing_input_is_incomplete_not_pass(missing: str) -> None:
    found = evidence(**{missing: None}, not_provided={"probe": "no --probe given"})
    assert found["verdict"] == "INCOMPLETE"
    assert found[missing] is None and missing in found["not_provided"]
    label = missing.replace("_", " ")
    assert found["reasons"][0].startswith(f"{label}: not provided")


def test_policy_tests_not_run_are_incomplete() -> None:
    found = evidence(policy_tests=policy_results(not_run=True))
    assert found["verdict"] == "INCOMPLETE"
    assert found["reasons"] == [
        "policy tests: 3 not run: opa-golib-python-bindings is not installed"
    ]


def test_failure_wins_over_missing_and_lists_both() -> None:
    found = evidence(
        probe=None, db_matrix=db_matrix(finding=True), not_provided={"probe": "no --probe given"}
    )
    assert found["verdict"] == "FAIL"
    assert found["reasons"][-1] == "probe: not provided (no --probe given)"


def test_versions_name_libraries_bundle_and_postgres() -> None:
    versions = collect_versions(db_matrix=db_matrix())
    assert versions["tenancy"] and versions["python"]
    assert set(versions["libraries"]) >= {"starlette", "sqlalchemy", "cryptography", "pyjwt"}
    assert all(versions["libraries"][name] for name in ("starlette", "sqlalchemy", "pyjwt"))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", versions["policy_bundle"]["digest"])
    assert versions["postgresql"] == "15.19"
    assert collect_versions()["postgresql"] is None


# -- inputs -------------------------------------------------------------------------------


def write(path: Path, document: Any) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def test_inputs_load_and_refuse_another_kind(tmp_path: Path) -> None:
    assert load_input(write(tmp_path / "p.json", probe()), kind=PROBE_KIND) == probe()
    with pytest.raises(
        EvidenceInputError,
        match=r"expected a tenancy.probe document, found "
        r"'tenancy.db-matrix'",
    ):
        load_input(write(tmp_path / "m.json", db_matrix()), kind=PROBE_KIND)
    with pytest.raises(EvidenceInputError, match="version 2 is not supported"):
        load_input(write(tmp_path / "v.json", {**db_matrix(), "version": 2}), kind=DB_MATRIX_KIND)
    with pytest.raises(EvidenceInputError, match="cell 0: outcome 'fine' is not one of"):
        load_input(write(tmp_path / "o.json", with_cell(probe(), outcome="fine")), kind=PROBE_KIND)
    with pytest.raises(EvidenceInputError, match="no such file"):
        load_input(tmp_path / "absent.json", kind=PROBE_KIND)


# -- the report ---------------------------------------------------------------------------

HOSTILE = "<script>alert('pwned')</script>"


def test_markup_in_inputs_is_escaped_and_no_script_is_emitted() -> None:
    hostile = with_cell(
        probe(leaked=True), route=f"GET /x{HOSTILE}", detail=HOSTILE, outcome="error"
    )
    db = with_cell(db_matrix(), detail=HOSTILE)
    db["findings"] = [{"check": HOSTILE, "subject": "public.worklogs", "message": HOSTILE}]
    html = render_html(evidence(probe=hostile, db_matrix=db))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert (
        f"GET /x{HOSTILE}".replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") in html
    )


def test_report_is_self_contained_and_accessible() -> None:
    html = render_html(evidence(probe=probe(leaked=True)))
    assert re.search(r'<html lang="en">', html)
    assert not re.search(r"<(script|link|iframe|img|object)\b", html, re.IGNORECASE)
    assert not re.search(r"\b(src|href)\s*=", html, re.IGNORECASE)
    assert "url(" not in html and "@import" not in html
    for table in (
        "probe-matrix",
        "probe-flagged",
        "probe-controls",
        "db-summary",
        "db-matrix",
        "audit-chains",
        "policy-tests",
        "versions",
    ):
        block = html.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
        assert re.match(r"\s*<caption>[^<]+</caption>", block), table
        assert '<th scope="' in block, table
    assert '<p id="verdict">Verdict: FAIL</p>' in html
    assert '<svg id="summary-chart"' in html and '<title id="chart-title">' in html
    assert re.search(r"<h1>[^<]+</h1>", html) and html.count("<h2") >= 6


def test_report_groups_the_probe_by_route_and_lists_the_leak() -> None:
    html = render_html(evidence(probe=probe(leaked=True)))
    matrix = html.split('<table id="probe-matrix">', 1)[1].split("</table>", 1)[0]
    assert matrix.count('<th scope="row"') == len(documents.ROUTES)
    assert '<td class="o-leaked">1 leaked, 3 enforced</td>' in matrix
    flagged = html.split('<table id="probe-flagged">', 1)[1].split("</table>", 1)[0]
    assert flagged.count("<tr class=") == 1
    assert "acme-member" in flagged and "tenant-header" in flagged


def test_missing_inputs_show_as_not_provided() -> None:
    html = render_html(
        evidence(probe=None, db_matrix=None, not_provided={"probe": "no --probe given"})
    )
    assert '<p class="missing" id="probe-missing">Not provided: no --probe given.</p>' in html
    assert 'id="db-missing"' in html and "Verdict: INCOMPLETE" in html
    assert "No matrix was provided" in html


def test_pack_is_rendered_from_the_json_written(tmp_path: Path) -> None:
    made = evidence(probe=probe(leaked=True))
    json_path, html_path = write_pack(made, tmp_path / "out")
    written = json.loads(json_path.read_text())
    assert written == json.loads(json.dumps(made))
    assert html_path.read_text() == render_html(written)


# -- the policy test runner ---------------------------------------------------------------


def test_shipped_policy_tests_run_and_pass() -> None:
    results = run_policy_tests()
    suites = {r.suite for r in results}
    assert suites == {"rego-unit", "case-table"}
    assert sum(r.suite == "case-table" for r in results) >= 30
    assert sum(r.suite == "rego-unit" for r in results) >= 15
    bad = [r for r in results if r.status is Status.FAILED]
    assert bad == []
    if policytests_module.go_rego_class() is not None:
        assert all(r.status is Status.PASSED for r in results)


def test_rego_tests_are_not_run_without_the_go_evaluator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policytests_module, "go_rego_class", lambda: None)
    results = run_policy_tests()
    rego = [r for r in results if r.suite == "rego-unit"]
    assert rego and {r.status for r in rego} == {Status.NOT_RUN}
    assert "opa-golib-python-bindings is not installed" in rego[0].detail
    assert all(r.status is Status.PASSED for r in results if r.suite == "case-table")


def test_a_case_table_answer_that_changed_is_a_failed_test(tmp_path: Path) -> None:
    policies = shutil.copytree(default_policy_dir(), tmp_path / "policies")
    table = json.loads((policies / "cases" / "authz.json").read_text())
    table["cases"][0]["allow"] = not table["cases"][0]["allow"]
    (policies / "cases" / "authz.json").write_text(json.dumps(table))
    failed = [r for r in run_policy_tests(policies) if r.status is Status.FAILED]
    assert [(r.suite, r.name) for r in failed] == [("case-table", table["cases"][0]["name"])]
    assert failed[0].detail.startswith("expected (")


# -- the command --------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TENANCY_DATABASE_URL", "DATABASE_URL", "TENANCY_AUDIT_KEY", "TENANCY_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    # The runner itself is tested above; the command's tests judge fixed results.
    monkeypatch.setattr(policytests_module, "run_policy_tests", lambda: policy_results())


def pack(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["evidence", "pack", "--out", str(tmp_path / "pack"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("cli_env")
def test_cli_pass_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documents.demo_data_dir(tmp_path / "demo")
    code, out, err = pack(
        capsys,
        tmp_path,
        "--probe",
        write(tmp_path / "p.json", probe()),
        "--db-matrix",
        write(tmp_path / "m.json", db_matrix()),
        "--data-dir",
        str(tmp_path / "demo"),
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "verdict: PASS"
    written = json.loads((tmp_path / "pack" / "evidence.json").read_text())
    assert [(c["tenant"], c["ok"], c["records"]) for c in written["audit"]] == [
        ("acme", True, 3),
        ("globex", True, 3),
        (PLATFORM_CHAIN, True, 1),
    ]
    assert written["versions"]["postgresql"] == "15.19"
    assert (tmp_path / "pack" / "evidence.html").read_text().count("Verdict: PASS") == 1


@pytest.mark.usefixtures("cli_env")
def test_cli_tampered_audit_chain_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documents.demo_data_dir(tmp_path / "demo", tamper=True)
    code, out, _ = pack(
        capsys,
        tmp_path,
        "--probe",
        write(tmp_path / "p.json", probe()),
        "--db-matrix",
        write(tmp_path / "m.json", db_matrix()),
        "--data-dir",
        str(tmp_path / "demo"),
    )
    assert code == 1
    assert "verdict: FAIL" in out and "audit: chain acme broken: changed at position 2" in out


@pytest.mark.usefixtures("cli_env")
def test_cli_leak_fails_and_missing_inputs_are_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents.demo_data_dir(tmp_path / "demo")
    demo = ("--data-dir", str(tmp_path / "demo"))
    leaked = write(tmp_path / "p.json", probe(leaked=True))
    assert (
        pack(
            capsys,
            tmp_path,
            "--probe",
            leaked,
            "--db-matrix",
            write(tmp_path / "m.json", db_matrix()),
            *demo,
        )[0]
        == 1
    )
    code, out, _ = pack(capsys, tmp_path, *demo)
    assert code == 3
    assert out.splitlines()[:3] == [
        "verdict: INCOMPLETE",
        "  - probe: not provided (no --probe or --probe-config given)",
        "  - db matrix: not provided (no --db-matrix or --db-url given)",
    ]


@pytest.mark.usefixtures("cli_env")
def test_cli_without_demo_data_is_incomplete_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = pack(
        capsys,
        tmp_path,
        "--probe",
        write(tmp_path / "p.json", probe()),
        "--db-matrix",
        write(tmp_path / "m.json", db_matrix()),
        "--data-dir",
        str(tmp_path / "none"),
    )
    assert code == 3 and "audit: not provided (no audit key" in out
    assert not (tmp_path / "none").exists()


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        ("--probe", None, r"absent\.json: no such file"),
        ("--probe", db_matrix(), r"expected a tenancy\.probe document, found 'tenancy\.db-matrix'"),
        ("--db-matrix", probe(), r"expected a tenancy\.db-matrix document, found 'tenancy\.probe'"),
        ("--db-matrix", "{not json", r"not JSON"),
        ("--audit-key-file", None, r"absent\.json"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, content: Any, message: str
) -> None:
    path = tmp_path / "absent.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        write(path, content)
    code, out, err = pack(capsys, tmp_path, flag, str(path), "--data-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.startswith("tenancy: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "pack").exists()


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--probe-config", "{path}"], r"probe\.toml is not valid TOML"),
        (["--db-url", "postgresql+psycopg://nobody@127.0.0.1:9/none"], r"127\.0\.0\.1"),
        (["--db-url", "not a url"], r"."),
    ],
)
def test_cli_running_the_probe_or_matrix_itself_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "probe.toml").write_text("target = [")
    argv = [a.replace("{path}", str(tmp_path / "probe.toml")) for a in argv]
    code, out, err = pack(capsys, tmp_path, *argv, "--data-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.startswith("tenancy: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "pack").exists()
