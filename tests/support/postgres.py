"""PostgreSQL for tests: the local server, or a testcontainers one where Docker runs.

With ``CI=true`` a missing local server is a failure, never a skip. The container variant
skips with its reason when no Docker engine answers (none runs on our machines).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

LOCAL_ADMIN_URL = os.environ.get(
    "TENANCY_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def docker_available() -> str | None:
    """None if a Docker engine answers, else the reason it does not."""
    suffix = "; these tests ran against the local PostgreSQL server instead"
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return "no Docker engine (no DOCKER_HOST, no /var/run/docker.sock)" + suffix
    import docker

    client = None
    try:
        client = docker.from_env(timeout=3)
        client.ping()
    except Exception as exc:  # any failure means: no engine we can use
        return f"no Docker engine answered ({type(exc).__name__})" + suffix
    finally:
        if client is not None:
            client.close()
    return None


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """Create a throwaway database on the server at ``admin_url``; yield its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"tenancy_test_{uuid.uuid4().hex[:12]}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL is not reachable at {admin_url}: {exc.orig}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def container_database() -> Iterator[str]:
    reason = docker_available()
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg") as pg:
        yield pg.get_connection_url()


@contextmanager
def app_role_database(
    setup: Callable[[Connection, str], None], *, prefix: str = "tenancy_app", **app_engine: Any
) -> Iterator[tuple[Engine, Engine]]:
    """A scratch database and a fresh application role (LOGIN NOSUPERUSER NOBYPASSRLS).

    ``setup(owner_connection, role)`` creates the schema, RLS and grants as the owner.
    Yields (owner engine, app-role engine, built with ``app_engine`` keyword arguments);
    drops the database and then the role.
    """
    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with scratch_database(LOCAL_ADMIN_URL) as url:
            owner = create_engine(url)
            with owner.begin() as conn:
                conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
                setup(conn, role)
            app = create_engine(url.replace("postgres@", f"{role}@", 1), **app_engine)
            try:
                yield owner, app
            finally:
                app.dispose()
                owner.dispose()
    finally:
        # The role owns grants in the scratch database: drop it once that is gone.
        admin = create_engine(LOCAL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
