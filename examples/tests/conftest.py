"""The examples' fixtures: the library's shared ones (``tests/conftest.py``), and the
worklogs store and app in place of the library tests' small app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tenancy.events import MemorySink
from tenancy.identity import TokenVerifier
from tenancy.tenants import TenantRegistry
from tenancy_examples.worklogs.app import create_app
from tenancy_examples.worklogs.store import WorklogStore
from tests import conftest as library
from tests.conftest import REGION

# The library's shared fixtures that name no app, registered here as well.
acme = library.acme
anyio_backend = library.anyio_backend
clock = library.clock
engine = library.engine
events = library.events
globex = library.globex
issuer = library.issuer
keys = library.keys
registry = library.registry
token_for = library.token_for
verifier = library.verifier


@pytest.fixture
def store(engine: Engine) -> WorklogStore:
    s = WorklogStore(engine)
    s.create_schema()
    return s


@pytest.fixture
def app(
    store: WorklogStore, verifier: TokenVerifier, registry: TenantRegistry, events: MemorySink
) -> Any:
    return create_app(
        store=store, verifier=verifier, tenants=registry, region=REGION, events=events
    )


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
