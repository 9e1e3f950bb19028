"""Demonstrates running the worklogs migrations as the owner, granting the app role DML."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(owner_url: str, *, app_role: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a URL must be doubled.
    config.set_main_option("sqlalchemy.url", owner_url.replace("%", "%%"))
    config.attributes["app_role"] = app_role
    return config


def upgrade(owner_url: str, *, app_role: str, revision: str = "head", sql: bool = False) -> None:
    """Apply migrations (``sql=True`` prints them instead, for review or ``infra/sql``)."""
    command.upgrade(alembic_config(owner_url, app_role=app_role), revision, sql=sql)


def downgrade(owner_url: str, *, app_role: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(owner_url, app_role=app_role), revision)
