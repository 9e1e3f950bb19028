"""What plugs into the command line (``tenancy.cli.plugins``): commands, export sources
and erasure tables come from entry points; the library's commands need none of them, and
a broken plugin costs only its own part (one warning line)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, MetaData, String, Table, func, select

import tenancy.cli.plugins
from tenancy.cli import main
from tenancy.cli.plugins import (
    CLI_GROUP,
    ERASURE_TABLES_GROUP,
    EXPORT_SOURCES_GROUP,
    CommandLine,
)
from tenancy.context import bind
from tenancy.deployment import open_engine, open_keys, open_registry
from tenancy.exports import ExportSource
from tenancy.keys import TenantKeys
from tenancy.settings import Settings
from tests.unit.exports.conftest import FIELDS, Note, Notes, ctx_of

Install = Callable[[str, str, str], None]
HERE = __name__
# A tenant-owned table no plugin declares: `retention erase --table` names it.
EXTRA = Table(
    "cli_extra",
    MetaData(),
    Column("tenant_id", String(36), primary_key=True),
    Column("id", String(36), primary_key=True),
)
ERASURE_TABLES = (Note.__table__,)


def notes_source(settings: Settings, *, engine: Engine, keys: TenantKeys) -> ExportSource:
    return ExportSource(rows=Notes(engine, keys=keys).list, fields=FIELDS)


def register(cli: CommandLine) -> None:
    hello = cli.command("hello", help="say hello")
    hello.add_argument("--to", default="world")
    cli.data_dir(hello)
    hello.set_defaults(handler=say_hello)
    cli.command("vacuum", group="db", help="a command in the library's db group").set_defaults(
        handler=lambda args: 0
    )


def say_hello(args: argparse.Namespace) -> int:
    print(f"hello {args.to} from {CommandLine.settings(args).data_dir.name}")
    return 0


def clashing(cli: CommandLine) -> None:
    cli.command("tenants", help="a name the library holds")


def failing(cli: CommandLine) -> None:
    raise RuntimeError("the plugin's own bug")


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(group, name, "module:attribute")``: the only entry points the CLI sees
    (whatever else this interpreter has installed, the examples' plugin included)."""
    installed: dict[str, list[EntryPoint]] = {}

    def entry_points(*, group: str) -> list[EntryPoint]:
        return installed.get(group, [])

    def add(group: str, name: str, value: str) -> None:
        installed.setdefault(group, []).append(EntryPoint(name, value, group))

    monkeypatch.setattr(tenancy.cli.plugins, "entry_points", entry_points)
    yield add


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def two_tenants(capsys: pytest.CaptureFixture[str], data_dir: str) -> None:
    for slug in ("acme", "globex"):
        assert run(capsys, "tenants", "create", slug, "--data-dir", data_dir)[0] == 0


def test_a_plugins_commands_join_the_library_ones(
    install: Install, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(CLI_GROUP, "greeter", f"{HERE}:register")
    code, out, err = run(capsys, "hello", "--to", "you", "--data-dir", str(tmp_path / "state"))
    assert (code, out, err) == (0, "hello you from state\n", "")
    assert run(capsys, "db", "vacuum")[0] == 0
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hello" in capsys.readouterr().out


def test_a_broken_or_clashing_plugin_costs_only_itself(
    install: Install, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(CLI_GROUP, "missing", "no_such_module_anywhere:register")
    install(CLI_GROUP, "failing", f"{HERE}:failing")
    install(CLI_GROUP, "clashing", f"{HERE}:clashing")
    install(CLI_GROUP, "greeter", f"{HERE}:register")
    code, out, err = run(capsys, "tenants", "list", "--data-dir", str(tmp_path))
    assert (code, out) == (0, "")
    warnings = err.splitlines()
    assert len(warnings) == 3, err
    assert all(line.startswith("tenancy: warning: plugin '") for line in warnings)
    assert "ModuleNotFoundError" in err and "the plugin's own bug" in err
    assert "`tenancy tenants` exists already" in err
    assert run(capsys, "hello")[0] == 0  # the healthy plugin still got its command


def test_no_plugin_at_all_leaves_every_library_command(
    install: Install, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("tenants", "keys", "support", "audit", "retention", "export", "probe"):
        assert command in listed
    for command in ("demo", "serve", "dev-token"):
        assert command not in listed


def test_export_without_an_installed_source_is_one_line_and_exit_1(
    install: Install, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    two_tenants(capsys, d)
    code, out, err = run(capsys, "export", "create", "--tenant", "acme", "--data-dir", d)
    assert (code, out) == (1, "")
    assert err.startswith("tenancy: error: no export source is installed") and err.count("\n") == 1


def test_several_sources_need_a_name(
    install: Install, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(EXPORT_SOURCES_GROUP, "notes", f"{HERE}:notes_source")
    install(EXPORT_SOURCES_GROUP, "more-notes", f"{HERE}:notes_source")
    d = str(tmp_path)
    two_tenants(capsys, d)
    create = ("export", "create", "--tenant", "acme", "--data-dir", d)
    code, _, err = run(capsys, *create)
    assert code == 1 and "several export sources: pass --source (more-notes, notes)" in err
    code, _, err = run(capsys, *create, "--source", "x")
    assert code == 1 and "no export source 'x'" in err
    code, out, _ = run(capsys, *create, "--source", "notes")
    assert code == 0 and out.startswith("acme\t")


def test_export_retention_and_audit_commands_on_a_plugged_in_source(
    install: Install, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(EXPORT_SOURCES_GROUP, "notes", f"{HERE}:notes_source")
    install(ERASURE_TABLES_GROUP, "notes", f"{HERE}:ERASURE_TABLES")
    d = str(tmp_path)
    two_tenants(capsys, d)
    settings = Settings.from_env({}, data_dir=d)
    engine = open_engine(settings)
    registry = open_registry(settings)
    notes = Notes(engine, keys=open_keys(settings, engine=engine))
    for slug in ("acme", "globex"):
        with bind(ctx_of(registry.get_by_slug(slug))):
            notes.add(f"{slug}'s note", comment="personal")

    code, out, _ = run(
        capsys, "export", "create", "--tenant", "acme", "--format", "csv", "--data-dir", d
    )
    assert code == 0 and "\trows=1\t" in out
    token = out.strip().splitlines()[-1]
    target = tmp_path / "acme.csv"
    download = ("export", "download", "--token", token, "--data-dir", d)
    assert run(capsys, *download, "--tenant", "acme", "--out", str(target))[0] == 0
    lines = target.read_text().splitlines()
    assert lines[0] == ",".join(FIELDS) and "acme's note" in lines[1] and len(lines) == 2
    code, _, err = run(capsys, *download, "--tenant", "globex", "--out", str(tmp_path / "x"))
    assert code == 1 and err.startswith("tenancy: error: ")  # another tenant's link

    code, out, _ = run(capsys, "retention", "run", "--data-dir", d)
    assert code == 0 and "0 row(s) deleted" in out
    code, out, _ = run(capsys, "audit", "verify", "--tenant", "acme", "--data-dir", d)
    assert code == 0, out
    code, out, _ = run(capsys, "audit", "export", "--tenant", "acme", "--data-dir", d)
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert "export.created" in actions and "export.downloaded" in actions
    assert "retention.purged" in actions

    EXTRA.create(engine)
    erase = ("retention", "erase", "--tenant", "acme", "--confirm", "acme", "--data-dir", d)
    code, out, _ = run(capsys, *erase, "--table", "cli_extra")
    assert code == 0
    assert "acme\tnotes\tdeleted=1" in out and "acme\tcli_extra\tdeleted=0" in out
    with engine.connect() as conn:
        left = conn.execute(select(Note.tenant_id, func.count()).group_by(Note.tenant_id)).all()
    assert [tenant for tenant, _ in left] == [registry.get_by_slug("globex").id]
