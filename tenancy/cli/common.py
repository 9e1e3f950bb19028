"""What every command shares: settings from arguments, exit codes."""

from __future__ import annotations

import argparse

from tenancy.settings import Settings

EXIT_ERROR = 1
EXIT_USAGE = 2


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None),
                             region=getattr(args, "region_override", None))
