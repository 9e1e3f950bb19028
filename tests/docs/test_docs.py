"""Every fenced block in README.md and docs/**/*.md is executed or checked.

One test case per block, named ``file:line`` (the fence's line). The convention:

- A page is followed like a reader follows it, in one terminal and top to bottom: its
  blocks run in order, in a fresh temporary directory that links the checkout's top-level
  entries (so ``.venv/bin/tenancy``, ``examples/...``, ``bench/...`` resolve) and has no
  data directory yet (``./.tenancy`` is new). The shell starts without ``TENANCY_*``
  settings and without the venv on ``PATH``, like a new user's. A case whose page has an
  earlier block that failed fails too, naming that block.
- ```` ```python ````: executed; the blocks of one page share one namespace (a module),
  in order. Hidden set-up goes in ``<!-- docs-test: setup ... -->`` (Python, run in that
  namespace before the page's first Python block); keep it to what the prose tells the
  reader to have, and prefer visible code.
- ```` ```sh ````: run by ``bash`` with ``set -eo pipefail``; variables a block
  ``export``s reach the page's later blocks. A line that starts a server (``make demo``,
  ``tenancy demo``) runs in the background, is waited for (``/healthz`` on port 8000) and
  stopped when the page ends. ``make test`` is not re-run from inside the tests: its case
  asserts that the Makefile's ``test`` target runs pytest and is what CI (``.ci/run``)
  runs. ``make`` never re-runs the install step (``-o .venv/.installed``).
- ```` ```console ````: a transcript. ``$ `` lines (continued by ``> `` lines or a
  trailing backslash) run as in ``sh`` blocks, each must exit 0, and what each prints must
  match the lines shown under it: line by line, whitespace runs equal, ``…`` (or a
  trailing ``...``) matches any text, a line ``...`` any number of lines; a line that is
  JSON matches JSON holding at least the keys shown with those values (``"…"``: any
  value). With ``numbers-vary`` digits match any number.
- ```` ```toml ```` and ```` ```json ```` are parsed. ```` ```text ```` (and a fence
  without a language) must say what it is: ``<!-- docs-test: layout -->`` (a file tree:
  every path in it must exist) or ``<!-- docs-test: output REASON -->`` (not code; the
  case passes and prints the reason). Any other block fails: nothing is skipped silently.

Block directives, in an HTML comment just before the fence: ``postgres`` (the local
PostgreSQL server: a scratch database named by ``PGHOST``/``PGDATABASE``,
``OWNER_DATABASE_URL`` and ``APP_DATABASE_URL``; marked ``postgres``), ``demo``
(``tenancy demo`` runs in the page's directory first, as the prose asks the reader to run
it in a second terminal; on the page's migrated database when it has one; marked
``e2e``), ``redis`` (the local Redis server; marked ``redis``), ``pytest`` (a Python
block that is a whole test module: saved in the page's directory and run by pytest there),
``args ...`` (a benchmark runs with these arguments appended, so it takes seconds; the
case prints the command it ran; marked ``bench``), ``numbers-vary`` (see console). A
page-wide ``<!-- docs-test: page postgres demo -->`` applies those two to every block of
the page; ``page independent`` lets each block run even when an earlier one failed (the
blocks share no state).
"""

from __future__ import annotations

import json
import re
import tomllib
import traceback
from pathlib import Path
from typing import Any

import pytest

from tests.docs.markdown import ROOT, Block, DirectiveError, Page, pages
from tests.docs.session import Outcome, PageRun, block_needs, serverize

PAGES = pages()
BLOCKS = [(page, block) for page in PAGES for block in page.blocks]
SHELL = {"sh", "bash", "shell"}
RUNS: dict[str, PageRun] = {}
ELLIPSES = ("…", "...")
README_LIMIT = 12 * 1024


def marks(page: Page, block: Block) -> list[pytest.MarkDecorator]:
    found = [pytest.mark.docs]
    needs = block_needs(page, block)
    if "postgres" in needs:
        found.append(pytest.mark.postgres)
    if "demo" in needs or serverize(block.text) != block.text:
        found.append(pytest.mark.e2e)
    if "args" in block.directives:
        found.append(pytest.mark.bench)
    if "redis" in block.directives:
        found.append(pytest.mark.redis)
    return found


@pytest.fixture(scope="session", autouse=True)
def _close_pages() -> Any:
    yield
    for run in list(RUNS.values()):
        close(run)


LEAKS: dict[str, list[str]] = {}


def close(run: PageRun) -> None:
    run.close()
    RUNS.pop(run.page.path, None)
    if run.leaks:
        LEAKS[run.page.path] = run.leaks


def page_run(page: Page) -> PageRun:
    """This page's run; any other page's is closed first (one demo on the ports at once)."""
    for other in list(RUNS.values()):
        if other.page.path != page.path:
            close(other)
    if page.path not in RUNS:
        RUNS[page.path] = PageRun.open(page)
    return RUNS[page.path]


@pytest.mark.parametrize(
    ("page", "block"),
    [pytest.param(p, b, id=b.id, marks=marks(p, b)) for p, b in BLOCKS],
)
def test_block(page: Page, block: Block) -> None:
    run = page_run(page)
    for earlier in page.blocks:
        if earlier.line == block.line:
            break
        if earlier.line not in run.results:
            run.results[earlier.line] = attempt(run, earlier)
        if not run.results[earlier.line].ok and "independent" not in page.needs:
            pytest.fail(
                f"{block.id}: not run: the earlier block {earlier.id} failed", pytrace=False
            )
    outcome = attempt(run, block)
    run.results[block.line] = outcome
    if outcome.message:
        print(outcome.message)
    if not outcome.ok:
        pytest.fail(f"{block.id}: {outcome.message}", pytrace=False)


def attempt(run: PageRun, block: Block) -> Outcome:
    try:
        message = execute(run, block)
    except _Unavailable as exc:
        pytest.skip(str(exc))
    except BlockRaised as exc:  # the block's own code raised: where, in the page
        cause = exc.__cause__ or exc
        detail = "".join(traceback.format_exception(cause)[-8:])
        return Outcome(False, f"{type(cause).__name__}: {cause}\n{detail}")
    except Exception as exc:  # the runner's finding: its message says what and where
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    return Outcome(True, message or "")


class BlockRaised(Exception):
    """A Python block raised (its exception is the ``__cause__``)."""


class _Unavailable(Exception):
    """PostgreSQL is not reachable here (a failure under CI=true, as in tests/support)."""


def _require_postgres() -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from tests.docs.session import ADMIN_URL
    from tests.support.postgres import in_ci

    engine = create_engine(ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {exc.orig}"
        if in_ci():
            raise AssertionError(message) from exc
        raise _Unavailable(message + " (outside CI this skips; CI=true makes it fail)") from exc
    finally:
        engine.dispose()


def execute(run: PageRun, block: Block) -> str | None:
    needs = block_needs(run.page, block)
    if "postgres" in needs:
        _require_postgres()
        if "demo" in needs:
            run.migrate_postgres()
        else:
            run.need_postgres()
    if "demo" in needs:
        run.start_demo()
    lang = block.lang
    if "output" in block.directives:
        return f"{block.id}: output only, not executed: {block.directives['output']}"
    if lang == "python" and "pytest" in block.directives:
        return run_pytest(run, block)
    if lang == "python":
        return run_python(run, block)
    if lang in SHELL:
        return run_sh(run, block)
    if lang == "console":
        return run_console(run, block)
    if lang == "toml":
        tomllib.loads(block.text)
        return None
    if lang == "json":
        json.loads(block.text)
        return None
    if "layout" in block.directives:
        return check_layout(block)
    raise AssertionError(
        f"cannot execute a {lang or 'plain'!r} block: give it a language the runner runs, "
        "or a docs-test directive (output REASON, layout)"
    )


# -- python --------------------------------------------------------------------------------


def run_python(run: PageRun, block: Block) -> None:
    namespace = run.namespace.__dict__
    with run.python_environment():
        if "__docs_setup_done__" not in namespace:
            namespace["__docs_setup_done__"] = True
            for line, code in run.page.setup:
                exec(
                    compile(code, f"{run.page.path}:{line} (setup)", "exec", dont_inherit=True),
                    namespace,
                )
        source = "\n" * (block.line) + block.text  # tracebacks point at the page's lines
        try:
            exec(compile(source, run.page.path, "exec", dont_inherit=True), namespace)
        except Exception as exc:
            raise BlockRaised(str(exc)) from exc


def run_pytest(run: PageRun, block: Block) -> str:
    """A block that is a whole test module: saved in the page's directory and run by
    pytest there, as its reader would (the tenancy plugin comes with the install)."""
    name = f"test_docs_{block.line}.py"
    (run.directory / name).write_text(block.text)
    done = run.shell(
        f".venv/bin/python -m pytest -q -p no:cacheprovider {name}", where=block.id, timeout=600
    )
    return f"{block.id}: pytest: " + done.stdout.strip().splitlines()[-1]


# -- sh --------------------------------------------------------------------------------------


def run_sh(run: PageRun, block: Block) -> str | None:
    script, notes = prepare_shell(block)
    run.shell(serverize(script), where=block.id)
    return "\n".join(notes) or None


def prepare_shell(block: Block) -> tuple[str, list[str]]:
    """``make test`` checked instead of run; benchmark arguments appended."""
    lines, notes = [], []
    for line in block.text.split("\n"):
        command = line.split("#", 1)[0].strip()
        if command == "make test":
            notes.append(check_make_test())
            continue
        if "args" in block.directives:
            extra = block.directives["args"]
            make = re.fullmatch(r"make\s+(\S+)", command)
            if make:
                command = recipe(make.group(1)).replace("$(BIN)", ".venv/bin")
            if re.search(r"bench/\S+\.py", command):
                line = f"{command} {extra}"
                notes.append(f"ran: {line}")
        lines.append(line)
    return "\n".join(lines), notes


def check_make_test() -> str:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run no longer runs `make test`"
    steps = recipe("test")
    assert re.fullmatch(r"\$\(BIN\)/python -m pytest.*", steps), f"make test runs {steps!r}"
    return f"make test: not re-run from the docs tests; CI runs it, and it runs {steps!r}"


def recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert match, f"the Makefile has no {target!r} target"
    steps = [s.strip() for s in match.group(1).splitlines()]
    assert len(steps) == 1, f"make {target} runs several commands: {steps}"
    return steps[0]


# -- console -------------------------------------------------------------------------------


def transcript(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) pairs of a ``$ `` transcript."""
    steps: list[tuple[str, list[str]]] = []
    continuing = False
    for line in text.rstrip("\n").split("\n"):
        if continuing or (line.startswith("> ") and steps and not steps[-1][1]):
            part = line[2:] if line.startswith("> ") else line
            steps[-1] = (steps[-1][0] + "\n" + part, [])
        elif line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        else:
            raise AssertionError(f"output before any command: {line!r}")
        continuing = line.endswith("\\")
    return steps


def run_console(run: PageRun, block: Block) -> None:
    steps = transcript(block.text)
    script = ["set +e"]
    for n, (command, _) in enumerate(steps):
        script += [
            f"printf '\\n@@docs-cmd {n}@@\\n'",
            serverize(command),
            f"__s=$?; printf '\\n@@docs-status {n} %d@@\\n' $__s",
        ]
    done = run.run_shell("\n".join(script))
    chunks = re.split(r"\n@@docs-cmd (\d+)@@\n", "\n" + done.stdout)
    outputs: dict[int, tuple[list[str], int]] = {}
    for index, chunk in zip(chunks[1::2], chunks[2::2], strict=True):
        body, _, status = chunk.rpartition("\n@@docs-status ")
        code = int(status.split()[1].rstrip("@"))
        # What a terminal shows: a carriage return (progress output) rewrites the line.
        lines = [line.rsplit("\r", 1)[-1].rstrip() for line in body.strip("\n").split("\n")]
        outputs[int(index)] = (lines, code)
    vary = "numbers-vary" in block.directives
    for n, (command, expected) in enumerate(steps):
        if n not in outputs:
            raise AssertionError(f"`{command}` did not run\n--- stderr\n{done.stderr}")
        actual, code = outputs[n]
        actual = [] if actual == [""] else actual
        if code != 0:
            raise AssertionError(
                f"`{command}` exited {code}\n--- output\n"
                + "\n".join(actual)
                + f"\n--- stderr\n{done.stderr}{run.server_log_tail()}"
            )
        problem = match_lines([e.rstrip() for e in expected], actual, vary=vary)
        if problem:
            raise AssertionError(
                f"`{command}`: {problem}\n--- expected\n"
                + "\n".join(expected)
                + "\n--- actual\n"
                + "\n".join(actual)
            )


def match_lines(expected: list[str], actual: list[str], *, vary: bool) -> str | None:
    """None if ``actual`` has the shape of ``expected``; else what differs."""
    while expected and not expected[-1].strip():
        expected = expected[:-1]
    if not expected:
        return None if not actual else "printed output the transcript does not show"

    def walk(e: int, a: int) -> bool:
        if e == len(expected):
            return a == len(actual)
        if expected[e].strip() in ELLIPSES:
            return any(walk(e + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and line_matches(expected[e], actual[a], vary) and walk(e + 1, a + 1)

    if walk(0, 0):
        return None
    for line in expected:
        if line.strip() not in ELLIPSES and not any(line_matches(line, x, vary) for x in actual):
            return f"no output line matches {line!r}"
    places = {
        line: [n for n, x in enumerate(actual) if line_matches(line, x, vary)]
        for line in expected
        if line.strip() not in ELLIPSES
    }
    return f"the lines are there, but not in this order (expected line -> actual lines: {places})"


def line_matches(expected: str, actual: str, vary: bool) -> bool:
    stripped = expected.strip()
    if stripped[:1] in "{[" and not stripped.endswith("..."):
        try:
            shown = json.loads(stripped)
        except ValueError:
            pass
        else:
            try:
                return json_holds(json.loads(actual), shown)
            except ValueError:
                return False
    pattern = ""
    text = expected
    trailing = text.rstrip().endswith("...")
    if trailing:
        text = text.rstrip()[:-3]
    for piece in re.split(r"(…|\s+)", text.strip()):
        if piece == "…":
            pattern += ".*?"
        elif piece.isspace():
            pattern += r"\s+"
        elif vary:
            pattern += r"\d+(?:[.,]\d+)*".join(
                re.escape(p) for p in re.split(r"\d+(?:[.,]\d+)*", piece)
            )
        else:
            pattern += re.escape(piece)
    pattern += ".*" if trailing else ""
    return re.fullmatch(pattern, actual.strip()) is not None


def json_holds(actual: Any, shown: Any) -> bool:
    if shown == "…":
        return True
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(
            k in actual and json_holds(actual[k], v) for k, v in shown.items()
        )
    if isinstance(shown, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(shown)
            and all(json_holds(a, s) for a, s in zip(actual, shown, strict=True))
        )
    return bool(actual == shown and type(actual) is type(shown))


# -- text ------------------------------------------------------------------------------------


def check_layout(block: Block) -> str:
    """Every path a file tree names exists (a folder's entries are relative to it)."""
    missing = []
    for entry in layout_paths(block.text):
        if not (ROOT / entry).exists():
            missing.append(entry)
    assert not missing, f"the tree names paths that do not exist: {missing}"
    return f"{block.id}: layout checked against the checkout"


def layout_paths(text: str) -> list[str]:
    """The paths a tree names: a name in column 0 is at the top, one indented by two
    spaces is inside the last top-level folder; deeper text is description."""
    found: list[str] = []
    folder = ""
    for line in text.split("\n"):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = line.split()[0]
        if indent == 0:
            folder = name if name.endswith("/") else ""
            found.append(name)
        elif indent == 2 and folder:
            found.append(folder + name)
    return found


# -- whole-document checks -----------------------------------------------------------------


PATH_IN_CODE = re.compile(r"`((?:tests|examples|bench|policies|infra|docs|tenancy)/[\w./-]*[\w/])`")


@pytest.mark.docs
@pytest.mark.parametrize("page", PAGES, ids=[p.path for p in PAGES])
def test_paths_named_in_the_text_exist(page: Page) -> None:
    text = (ROOT / page.path).read_text()
    missing = []
    for number, line in enumerate(text.split("\n"), 1):
        for match in PATH_IN_CODE.finditer(line):
            path = match.group(1)
            if "*" in path or "<" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(f"{page.path}:{number}: {path}")
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)


@pytest.mark.docs
def test_the_readme_is_short() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes: keep it under {README_LIMIT}"


@pytest.mark.docs
def test_every_page_is_in_the_site_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    pages_on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    listed = set(re.findall(r"(?:^|\s)([\w/-]+\.md)\s*$", config, re.M))
    assert pages_on_disk == listed


@pytest.mark.docs
def test_the_site_builds_strict(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_directives_are_readable() -> None:
    # pages() ran at import; a bad directive would have stopped collection with its place.
    assert all(isinstance(p, Page) for p in PAGES)
    from tests.docs.markdown import _block_directives, parse_text

    page = parse_text(
        "<!-- docs-test: setup\n    x = 1\n-->\n<!-- docs-test: page demo -->\n"
        "<!-- docs-test: output a diagram -->\n```text\na\n```\n",
        "x.md",
    )
    assert page.setup == ((1, "x = 1\n"),) and page.needs == {"demo"}
    assert page.blocks[0].directives == {"output": "a diagram"} and page.blocks[0].line == 6
    with pytest.raises(DirectiveError, match=r"x\.md:1: unknown docs-test directive"):
        _block_directives("nonsense", "", "x.md:1")
    with pytest.raises(DirectiveError, match=r"x\.md:2: a docs-test comment must come just"):
        parse_text("<!-- docs-test: demo -->\ntext\n```sh\n```\n", "x.md")


def test_transcripts_match_in_shape() -> None:
    assert match_lines(["a  b", "..."], ["a b", "c"], vary=False) is None
    assert match_lines(["401"], ["200"], vary=False) is not None
    assert match_lines(["n = 3"], ["n = 14"], vary=True) is None
    assert match_lines(['{"a": 1, "b": "…"}'], ['{"a":1,"b":"x","c":2}'], vary=False) is None
    assert match_lines(['{"a": 2}'], ['{"a":1}'], vary=False) is not None
    assert match_lines(["GET /x  6/6 ..."], ["GET /x 6/6 7/7"], vary=False) is None
    assert match_lines([], ["noise"], vary=False) is not None
    assert [c for c, _ in transcript("$ a \\\n> b\nout\n$ c\n")] == ["a \\\nb", "c"]


@pytest.mark.docs
def test_pages_leave_nothing_open() -> None:
    """Runs last: the pages' code closed what it opened (clients, files, sockets)."""
    for run in list(RUNS.values()):
        close(run)
    assert not LEAKS, f"left open when the page ended: {LEAKS}"
