"""How the library's modules depend on each other: the rules a reviewer would otherwise
have to re-check by hand."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tenancy

ROOT = Path(tenancy.__file__).parent


def loaded_after(module: str) -> set[str]:
    """The tenancy modules a fresh interpreter holds after importing ``module``."""
    code = (
        f"import sys, {module}; print(*sorted(m for m in sys.modules if m.startswith('tenancy')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_the_problem_table_imports_no_feature_package() -> None:
    # tenancy/__init__ may import top-level modules; no package below tenancy is needed.
    packages = {
        m
        for m in loaded_after("tenancy.problems")
        if m.count(".") > 1 or (ROOT / m.removeprefix("tenancy.")).is_dir()
    }
    assert not packages


def test_the_evidence_report_does_not_import_the_evidence_pack() -> None:
    assert "tenancy.testing.evidence" not in loaded_after("tenancy.testing.report")


def test_no_private_name_is_imported_from_another_tenancy_module() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tenancy"):
                found += [
                    f"{path.relative_to(ROOT)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not found


def test_the_raw_envelope_is_only_in_hazmat() -> None:
    import tenancy.keys
    import tenancy.keys.hazmat

    for raw in ("seal", "open_", "DataKey"):
        assert not hasattr(tenancy.keys, raw), f"tenancy.keys exposes {raw}"
        assert raw in tenancy.keys.hazmat.__all__


def test_one_retry_policy() -> None:
    # Hand-written retry loops (``for attempt in range(...)`` around a try/sleep) are
    # replaced by tenancy.retrying (tenacity).
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "tenancy"
    loops = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if re.search(r"for attempt in range\(.*\):\n(\s+)try:", p.read_text())
    ]
    assert loops == [], loops


def test_no_library_module_imports_the_examples() -> None:
    # The examples plug into the library (entry points), never the other way round.
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("tenancy_examples", "services", "examples")
            ]
    assert not found


# Modules over the soft cap, each by design. errors.py is the one exception tree: every
# library error with its code and docstring, in one place (STYLE.md, "Errors").
LONG_MODULES = frozenset({"tenancy/errors.py"})
MAX_LINES = 400


def test_no_module_is_over_the_soft_cap() -> None:
    # Past ~400 lines a module grows into a sub-package with a re-exporting __init__.py.
    assert all((ROOT.parent / name).is_file() for name in LONG_MODULES)
    lines = {
        path.relative_to(ROOT.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(ROOT.rglob("*.py"))
    }
    long = [f"{name}: {n} lines" for name, n in lines.items() if n > MAX_LINES]
    assert [entry for entry in long if entry.split(":")[0] not in LONG_MODULES] == []
