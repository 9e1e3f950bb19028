"""``tenancy``: run the demo, mint dev tokens; manage tenants, keys, support access,
audit trails, retention and exports; test isolation (probe, db matrix, evidence pack).

Errors print one line to stderr and exit non-zero; nothing is half-done.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from tenancy.cli.common import EXIT_ERROR, EXIT_USAGE
from tenancy.cli.parser import build_parser
from tenancy.errors import TenancyError

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except (TenancyError, ValueError, OSError, SQLAlchemyError) as exc:
        # One line, whatever the source: driver errors span several.
        detail = getattr(exc, "orig", None) or exc
        print(f"tenancy: error: {' '.join(str(detail).split())}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
