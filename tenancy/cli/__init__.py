"""``tenancy``: manage tenants, keys, support access, audit trails, retention and exports
of a deployment described by settings; test isolation (probe, db matrix, evidence pack).
Installed plugins add their own commands (:mod:`tenancy.cli.plugins`).

Errors print one line to stderr and exit non-zero; nothing is half-done.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from tenancy.cli.common import EXIT_ERROR, EXIT_USAGE, print_error
from tenancy.cli.parser import build_parser
from tenancy.errors import TenancyError

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tenancy`` command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except (TenancyError, ValueError, OSError, SQLAlchemyError) as exc:
        print_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
