"""The checks of each scoped table's RLS: enabled [rls-enabled], forced [rls-forced], with
a policy [rls-policy] whose USING and WITH CHECK read the tenant setting
[rls-policy-setting], are not always true [rls-policy-always-true] and do not admit a
setting that was never set [rls-policy-null-setting].

The last one is a heuristic over ``pg_get_expr``'s text (a small tokenizer, below); it is
its own module so that the heuristic is read, and changed, beside the rule it serves.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from tenancy.scoping.audit.model import Finding

_POLICIES = text("""
    SELECT polname, polpermissive, pg_get_expr(polqual, polrelid) AS using_expr,
           pg_get_expr(polwithcheck, polrelid) AS check_expr
    FROM pg_policy WHERE polrelid = :oid
""")


def table_findings(
    connection: Connection, oid: int, name: str, enabled: bool, forced: bool, setting: str
) -> list[Finding]:
    """The RLS checks of one scoped table (``oid``, shown as ``name``): enabled, forced,
    a policy, and each policy's USING and WITH CHECK against ``setting``."""
    findings = []
    if not enabled:
        findings.append(Finding("rls-enabled", name, "row level security is not enabled"))
    if not forced:
        findings.append(Finding("rls-forced", name, "row level security is not forced"))
    policies = connection.execute(_POLICIES, {"oid": oid}).all()
    if enabled and not policies:
        findings.append(Finding("rls-policy", name, "no policy (every row is hidden)"))
    for policy in policies:
        for label, expr in (("USING", policy.using_expr), ("WITH CHECK", policy.check_expr)):
            if expr is None and label == "WITH CHECK":
                continue  # PostgreSQL applies USING to writes when WITH CHECK is absent
            if expr is None or _always_true(expr):
                findings.append(
                    Finding(
                        "rls-policy-always-true",
                        name,
                        f"policy {policy.polname!r} {label} is always true",
                    )
                )
            elif setting not in expr:
                findings.append(
                    Finding(
                        "rls-policy-setting",
                        name,
                        f"policy {policy.polname!r} {label} does not read {setting!r}",
                    )
                )
            elif construct := _null_admitting(expr, setting):
                findings.append(
                    Finding(
                        "rls-policy-null-setting",
                        name,
                        f"policy {policy.polname!r} {label} uses {construct} "
                        f"on {setting!r}: it may admit rows when the setting "
                        "was never set (run tenancy db matrix)",
                    )
                )
    return findings


_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\w+|::|\S")
_NULL_TESTS = (
    ("IS", "NULL"),
    ("IS", "NOT", "FALSE"),
    ("IS", "NOT", "TRUE"),
    ("IS", "UNKNOWN"),
    ("IS", "DISTINCT", "FROM"),
    ("IS", "NOT", "DISTINCT", "FROM"),
)


def _null_admitting(expr: str, setting: str) -> str | None:
    """The construct that may turn a NULL setting into a match, or None.

    ``pg_get_expr`` parenthesises every test it prints, so the group around an ``IS ...``
    test is that test with its operands.
    """
    tokens = _TOKEN.findall(expr)
    upper = [t.upper() for t in tokens]
    call = ["CURRENT_SETTING", "(", f"'{setting.upper()}'"]

    def reads_setting(start: int, end: int) -> bool:
        return any(upper[i : i + 3] == call for i in range(start, end))

    for i, word in enumerate(upper):
        for test in _NULL_TESTS:
            if tuple(upper[i : i + len(test)]) == test:
                start, end = _group(upper, i)
                if reads_setting(start, end):
                    return " ".join(test)
        if word == "COALESCE" and upper[i + 1 : i + 2] == ["("]:
            start, end = _group(upper, i + 2)
            args, depth, begin = [], 0, start
            for j in range(start, end):
                depth += {"(": 1, ")": -1}.get(upper[j], 0)
                if depth == 0 and upper[j] == ",":
                    args.append((begin, j))
                    begin = j + 1
            args.append((begin, end))
            if any(reads_setting(*a) for a in args) and not all(
                reads_setting(*a) or _constant(tokens[a[0] : a[1]]) for a in args
            ):
                return "COALESCE with a non-constant fallback"
    return None


def _group(tokens: list[str], index: int) -> tuple[int, int]:
    """The token range inside the innermost parentheses around ``index`` (or all)."""
    depth, start = 0, 0
    for i in range(index - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(tokens[i], 0)
        if depth < 0:
            start = i + 1
            break
    depth = 0
    for i in range(index, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        if depth < 0:
            return start, i
    return start, len(tokens)


def _constant(tokens: list[str]) -> bool:
    """A literal, optionally cast: ``''::text``, ``'x'``, ``NULL``, ``0``."""
    head, rest = tokens[:1], tokens[1:]
    literal = bool(head) and (
        head[0].startswith("'") or head[0].isdigit() or head[0].upper() == "NULL"
    )
    return literal and all(t == "::" or t.isidentifier() for t in rest)


def _always_true(expr: str) -> bool:
    return expr.strip().strip("()").strip().lower() in ("true", "1 = 1")
