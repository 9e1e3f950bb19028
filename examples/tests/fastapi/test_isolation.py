"""The FastAPI example probed by the pytest plugin (routes from its OpenAPI document):
zero leaks; the deliberately broken builds (``mutants.py``) are caught."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from examples.tests.fastapi import mutants
from examples.tests.fastapi.conftest import PUBLIC, ROUTES, Build
from tenancy.testing.plugin import TestIdentity, check_isolation
from tenancy.testing.probe import Outcome, ProbeReport


def test_the_fastapi_example_leaks_nothing(
    service: Build, assert_isolated: Callable[..., ProbeReport]
) -> None:
    report = assert_isolated(service(), routes=ROUTES, exclude=PUBLIC)
    assert not report.void and report.exit_code == 0
    assert set(report.routes) == {
        "GET /whoami",
        "GET /worklogs",
        "POST /worklogs",
        "GET /worklogs/{worklog_id}",
        "DELETE /worklogs/{worklog_id}",
    }
    assert report.summary["leaked"] == 0 and report.summary["enforced"] > 50
    attacks = {c.attack for c in report.cells if c.outcome is Outcome.ENFORCED}
    assert {"cross-identity", "tenant-header", "no-token"} <= attacks


def leaked(report: ProbeReport) -> set[tuple[str, str]]:
    return {(c.route, c.attack) for c in report.leaks}


def test_a_listing_that_drops_the_scoping_is_caught(
    service: Build, tenancy_identities: list[TestIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    mutants.drop_listing_scoping(monkeypatch)
    report = check_isolation(service(), tenancy_identities, routes=ROUTES, exclude=PUBLIC)
    assert report.exit_code == 1
    assert ("GET /worklogs", "cross-identity") in leaked(report)
    # Reads by id stay scoped; a write shows up as a change to the victim's data only
    # because the broken listing shows every tenant's rows.
    assert {r for r, _ in leaked(report)} <= {"GET /worklogs", "POST /worklogs"}


def test_a_route_that_drops_the_tenant_dependency_is_caught(
    service: Build, tenancy_identities: list[TestIdentity]
) -> None:
    report = check_isolation(
        mutants.drop_tenant_dependency(service()),
        tenancy_identities,
        routes=ROUTES,
        exclude=PUBLIC,
    )
    assert report.exit_code == 1
    assert ("GET /worklogs/{worklog_id}", "cross-identity") in leaked(report)
    assert {r for r, _ in leaked(report)} == {"GET /worklogs/{worklog_id}"}
