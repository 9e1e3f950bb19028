"""``python -m tenancy.cli``."""

from tenancy.cli import main

raise SystemExit(main())
