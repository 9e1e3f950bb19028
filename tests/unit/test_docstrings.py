"""Every public definition of the library has a docstring (issue 16).

Public means: a class, function or method whose name does not start with ``_``, in a
module whose path has no part starting with ``_`` (``__init__.py`` aside), found at
module level or inside a public class. Functions nested in functions are not API. An
``@overload`` stub and a property's setter or deleter are skipped: the implementation
and the getter carry the docstring.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tenancy

PACKAGE = Path(tenancy.__file__).parent
REPOSITORY = PACKAGE.parent

# Definitions allowed to have no docstring, as "path:qualname": none any more. Only ever
# remove entries: the second test fails once an entry has its docstring (or is gone).
ALLOWLIST: frozenset[str] = frozenset()

_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _is_public_module(path: Path) -> bool:
    parts = path.relative_to(PACKAGE).parts
    return not any(part.startswith("_") and part != "__init__.py" for part in parts)


def _skipped(node: _Definition) -> bool:
    """An ``@overload`` stub, or a property's setter or deleter."""
    if isinstance(node, ast.ClassDef):
        return False
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Name) and decorator.id == "overload":
            return True
        if isinstance(decorator, ast.Attribute) and decorator.attr in (
            "overload",
            "setter",
            "deleter",
        ):
            return True
    return False


def _definitions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, _Definition]]:
    """Public definitions directly in ``node``, and those of its public classes."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _Definition) or child.name.startswith("_"):
            continue
        if _skipped(child):
            continue
        yield prefix + child.name, child
        if isinstance(child, ast.ClassDef):
            yield from _definitions(child, f"{prefix}{child.name}.")


def public_definitions() -> dict[str, bool]:
    """Every public definition, as "path:qualname", and whether it has a docstring."""
    found: dict[str, bool] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if not _is_public_module(path):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(REPOSITORY).as_posix()
        for qualname, node in _definitions(tree):
            key = f"{where}:{qualname}"
            # A name defined twice (a conditional definition) needs a docstring on each.
            found[key] = found.get(key, True) and bool(ast.get_docstring(node))
    return found


def test_every_public_definition_has_a_docstring() -> None:
    missing = sorted(name for name, documented in public_definitions().items() if not documented)
    unexpected = [name for name in missing if name not in ALLOWLIST]
    assert not unexpected, "public definitions without a docstring:\n" + "\n".join(unexpected)


def test_the_allowlist_holds_only_undocumented_definitions() -> None:
    definitions = public_definitions()
    stale = sorted(name for name in ALLOWLIST if definitions.get(name, True))
    assert not stale, "documented or gone, remove from ALLOWLIST:\n" + "\n".join(stale)
