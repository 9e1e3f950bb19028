"""``tenancy probe``: the HTTP isolation probe against a running deployment."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from tenancy.cli.common import EXIT_USAGE, print_error


def probe_command(args: argparse.Namespace) -> int:
    """``tenancy probe``: run the isolation probe against a target; exit 1 on a leak."""
    from tenancy.testing.probe import ProbeConfigError, load_config, run_probe

    try:
        config = load_config(args.config)
        report = asyncio.run(run_probe(config, target=args.target))
    except ProbeConfigError as exc:
        print_error(exc)
        return EXIT_USAGE
    if args.out:
        text = json.dumps(report.to_json(), indent=2)
        if args.out == "-":
            print(text)
        else:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.out != "-":
        print(report.render_text(verbose=args.verbose))
    return report.exit_code
