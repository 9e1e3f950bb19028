"""The fenced blocks of the README and the docs pages, with their docs-test directives.

A directive is an HTML comment (invisible on the rendered page) that starts with
``docs-test:``. Written on the lines just before a fence, it applies to that block; the
``setup`` and ``page`` directives apply to the whole page. See ``test_docs.py`` for what
each one means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
DIRECTIVE = re.compile(r"<!--\s*docs-test:(?P<body>.*?)-->", re.DOTALL)
# Words a block directive may hold, and how many arguments follow (-1: the rest).
BLOCK_WORDS = {
    "output": -1,
    "layout": 0,
    "demo": 0,
    "postgres": 0,
    "redis": 0,
    "pytest": 0,
    "args": -1,
    "numbers-vary": 0,
}
PAGE_WORDS = {"postgres", "demo", "independent"}


@dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository root
    line: int  # the fence's line, 1-based
    lang: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Page:
    path: str
    blocks: tuple[Block, ...]
    setup: tuple[tuple[int, str], ...] = ()  # (line, python source) of setup comments
    needs: frozenset[str] = frozenset()  # page directives: postgres, demo


class DirectiveError(ValueError):
    """A docs-test comment the runner cannot read (named with its file and line)."""


def pages() -> list[Page]:
    """README.md, then every page under docs/, in path order."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [parse(path) for path in files]


def parse(path: Path) -> Page:
    return parse_text(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def parse_text(text: str, rel: str) -> Page:
    """The blocks and directives of one page's text (``rel``: its name in messages)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    setup: list[tuple[int, str]] = []
    needs: set[str] = set()
    pending: dict[str, str] = {}
    n = 0
    while n < len(lines):
        line = lines[n]
        if "<!--" in line and "docs-test:" in line:
            start = n
            chunk = line
            while "-->" not in chunk:
                n += 1
                if n >= len(lines):
                    raise DirectiveError(f"{rel}:{start + 1}: unterminated docs-test comment")
                chunk += "\n" + lines[n]
            match = DIRECTIVE.search(chunk)
            if match is None:
                raise DirectiveError(f"{rel}:{start + 1}: unreadable docs-test comment")
            body = match.group("body")
            head, _, rest = body.strip().partition("\n")
            words = head.split()
            if words and words[0] == "setup":
                code = body.split("setup", 1)[1]
                setup.append((start + 1, _dedent(code)))
            elif words and words[0] == "page":
                unknown = set(words[1:]) - PAGE_WORDS
                if unknown or not words[1:]:
                    raise DirectiveError(f"{rel}:{start + 1}: unknown page directive {head!r}")
                needs.update(words[1:])
            else:
                pending.update(_block_directives(head, rest, f"{rel}:{start + 1}"))
            n += 1
            continue
        fence = FENCE.match(line)
        if fence is None:
            if line.strip() and pending:
                raise DirectiveError(
                    f"{rel}:{n + 1}: a docs-test comment must come just before a code block"
                )
            n += 1
            continue
        marker = fence.group("fence")
        indent = len(fence.group("indent"))
        lang = fence.group("info").strip().split(" ")[0] if fence.group("info").strip() else ""
        body_lines = []
        n += 1
        start = n
        while n < len(lines) and not lines[n].strip().startswith(marker):
            body_lines.append(lines[n][indent:] if lines[n][:indent].strip() == "" else lines[n])
            n += 1
        if n >= len(lines):
            raise DirectiveError(f"{rel}:{start}: unterminated code block")
        blocks.append(Block(rel, start, lang, "\n".join(body_lines) + "\n", dict(pending)))
        pending = {}
        n += 1
    if pending:
        raise DirectiveError(f"{rel}: a docs-test comment at the end follows no code block")
    return Page(rel, tuple(blocks), tuple(setup), frozenset(needs))


def _block_directives(head: str, rest: str, where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    words = head.split()
    while words:
        word = words.pop(0)
        if word not in BLOCK_WORDS:
            raise DirectiveError(f"{where}: unknown docs-test directive {word!r}")
        if BLOCK_WORDS[word] == -1:
            found[word] = " ".join([*words, rest]).strip()
            if not found[word]:
                raise DirectiveError(f"{where}: {word!r} needs its text")
            return found
        found[word] = ""
    if rest.strip():
        raise DirectiveError(f"{where}: unexpected text after {head!r}")
    return found


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code).strip("\n") + "\n"
