"""What other distributions plug into ``tenancy`` through entry points.

=========================  ===============================================================
group                      each entry point is
=========================  ===============================================================
``tenancy.cli``            ``register(cli: CommandLine) -> None``: adds commands
``tenancy.export_sources`` ``factory(settings, *, engine, keys) -> ExportSource``: what
                           ``tenancy export create --source NAME`` exports
``tenancy.erasure_tables`` a sequence of tenant-owned ``Table`` objects that ``tenancy
                           retention erase`` empties of the tenant's rows
=========================  ===============================================================

The library's own commands never depend on a plugin: one that fails to load costs its
own commands or data only, with one warning line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol

from tenancy.cli.common import settings_of
from tenancy.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table

    from tenancy.exports import ExportSource
    from tenancy.keys import TenantKeys
    from tenancy.settings import Settings

CLI_GROUP = "tenancy.cli"
EXPORT_SOURCES_GROUP = "tenancy.export_sources"
ERASURE_TABLES_GROUP = "tenancy.erasure_tables"

__all__ = [
    "CLI_GROUP",
    "ERASURE_TABLES_GROUP",
    "EXPORT_SOURCES_GROUP",
    "CommandLine",
    "ExportSourceFactory",
    "erasure_tables",
    "export_source",
    "register_plugins",
]


class ExportSourceFactory(Protocol):
    """A ``tenancy.export_sources`` entry point: the deployment's rows to export."""

    def __call__(self, settings: Settings, *, engine: Engine, keys: TenantKeys) -> ExportSource:
        pass


class CommandLine:
    """What a ``tenancy.cli`` plugin's ``register`` gets: a way to add commands at the top
    level or inside a group of the library's (``db``). A command's handler is set with
    ``parser.set_defaults(handler=function)``; it takes the parsed arguments and returns
    the exit status. Errors the library knows (``TenancyError``, ``ValueError``,
    ``OSError``, database errors) print one line and exit 1, as for its own commands.
    """

    def __init__(
        self,
        commands: argparse._SubParsersAction[argparse.ArgumentParser],
        groups: Mapping[str, argparse._SubParsersAction[argparse.ArgumentParser]],
    ) -> None:
        self._commands = commands
        self._groups = dict(groups)

    def command(
        self, name: str, *, help: str, description: str | None = None, group: str | None = None
    ) -> argparse.ArgumentParser:
        """A new command ``tenancy NAME`` (or ``tenancy GROUP NAME``).

        Raises:
            ConfigurationError: the group does not exist, or the name is taken.
        """
        if group is None:
            actions = self._commands
        elif group in self._groups:
            actions = self._groups[group]
        else:
            raise ConfigurationError(f"no command group {group!r} to add {name!r} to")
        if name in actions.choices:
            where = f"tenancy {group} {name}" if group else f"tenancy {name}"
            raise ConfigurationError(f"`{where}` exists already")
        return actions.add_parser(name, help=help, description=description)

    @staticmethod
    def data_dir(parser: argparse.ArgumentParser) -> None:
        """The ``--data-dir`` option every state-reading command takes."""
        parser.add_argument(
            "--data-dir", help="state directory (default: $TENANCY_DATA_DIR or ./.tenancy)"
        )

    @staticmethod
    def settings(args: argparse.Namespace) -> Settings:
        """The process settings, with ``--data-dir`` applied."""
        return settings_of(args)


def register_plugins(cli: CommandLine) -> None:
    """Let every installed ``tenancy.cli`` plugin add its commands."""
    for entry in _entries(CLI_GROUP):
        register = _load(entry)
        if register is None:
            continue
        try:
            register(cli)
        except Exception as exc:  # a broken plugin must not break the library's commands
            _warn(entry, exc)


def export_source(
    settings: Settings, *, name: str | None, engine: Engine, keys: TenantKeys
) -> ExportSource:
    """The export source called ``name``, or the only one installed.

    Raises:
        ConfigurationError: none is installed, ``name`` is not, several are and ``name``
            is not given, or the factory returns something else than an ``ExportSource``.
    """
    factories: dict[str, Callable[..., Any]] = {}
    for entry in _entries(EXPORT_SOURCES_GROUP):
        factory = _load(entry)
        if factory is not None:
            factories[entry.name] = factory
    if not factories:
        raise ConfigurationError(
            f"no export source is installed (entry point group {EXPORT_SOURCES_GROUP!r})"
        )
    if name is None:
        if len(factories) > 1:
            raise ConfigurationError(f"several export sources: pass --source ({_names(factories)})")
        (name,) = factories
    if name not in factories:
        raise ConfigurationError(f"no export source {name!r} (installed: {_names(factories)})")
    from tenancy.exports import ExportSource

    found = factories[name](settings, engine=engine, keys=keys)
    if not isinstance(found, ExportSource):
        raise ConfigurationError(f"export source {name!r} returned no ExportSource")
    return found


def erasure_tables() -> list[Table]:
    """Every tenant-owned table that installed plugins declare as holding personal data."""
    from sqlalchemy import Table

    tables: list[Table] = []
    for entry in _entries(ERASURE_TABLES_GROUP):
        declared = _load(entry)
        if declared is None:
            continue
        if not isinstance(declared, Sequence) or not all(isinstance(t, Table) for t in declared):
            _warn(entry, TypeError("not a sequence of sqlalchemy Table objects"))
            continue
        tables += [t for t in declared if t not in tables]
    return tables


def _entries(group: str) -> list[EntryPoint]:
    # An editable install can list a distribution twice: each entry point counts once.
    unique: dict[tuple[str, str], EntryPoint] = {}
    for entry in entry_points(group=group):
        unique.setdefault((entry.name, entry.value), entry)
    return sorted(unique.values(), key=lambda e: e.name)


def _load(entry: EntryPoint) -> Any:
    try:
        return entry.load()
    except Exception as exc:  # e.g. its own dependencies are missing: skipped, said once
        _warn(entry, exc)
        return None


def _warn(entry: EntryPoint, exc: BaseException) -> None:
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    print(
        f"tenancy: warning: plugin {entry.name!r} ({entry.value}) not loaded: {detail}",
        file=sys.stderr,
    )


def _names(found: Mapping[str, object]) -> str:
    return ", ".join(sorted(found))
