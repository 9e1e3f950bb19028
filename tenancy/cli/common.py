"""What every command shares: settings from arguments, exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from tenancy.settings import Settings

EXIT_ERROR = 1
EXIT_USAGE = 2


def settings_of(args: argparse.Namespace) -> Settings:
    """The process settings, with ``--data-dir`` and ``--region`` from the command line."""
    return Settings.from_env(
        data_dir=getattr(args, "data_dir", None), region=getattr(args, "region_override", None)
    )


def print_error(exc: BaseException, *, hide: Iterable[str | None] = ()) -> None:
    """One line on stderr, whatever the source (driver errors span several, and a
    database URL echoed back must not show its password)."""
    detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
    for secret in hide:
        if secret:
            detail = detail.replace(secret, "<url>")
    print(f"tenancy: error: {detail}", file=sys.stderr)
