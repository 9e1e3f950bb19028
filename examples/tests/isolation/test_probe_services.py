"""The probe against the example services in-process: zero leaks on the real build, and
each deliberately broken build (``tests/isolation/mutants``, and the worklogs store of
``examples/tests/isolation/mutants``) is caught."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from examples.tests.isolation.conftest import PUBLIC, ROUTES, Deployment
from examples.tests.isolation.mutants.dropped_scoping import UnscopedListStore
from tenancy.testing.plugin import TestIdentity, check_isolation
from tenancy.testing.probe import Attack, Outcome, ProbeReport
from tests.isolation.mutants.expiry_ignored import ignore_grant_expiry
from tests.isolation.mutants.header_tenant import HeaderTenantMiddleware

Build = Callable[..., Deployment]


def probe(services: Deployment, identities: Sequence[TestIdentity]) -> ProbeReport:
    return check_isolation(
        services.edge, identities, routes=ROUTES, exclude=PUBLIC, staff=services.staff
    )


def leaked(report: ProbeReport) -> set[tuple[str, str]]:
    return {(c.route, c.attack) for c in report.leaks}


def test_the_example_services_leak_nothing(
    deployment: Build, assert_isolated: Callable[..., ProbeReport]
) -> None:
    services = deployment()
    report = assert_isolated(services.edge, routes=ROUTES, exclude=PUBLIC, staff=services.staff)
    assert not report.void and report.exit_code == 0
    attacks = {c.attack for c in report.cells if c.outcome is Outcome.ENFORCED}
    assert attacks == {a.value for a in Attack} - {"expired", "wrong-audience"}
    assert {c.outcome for c in report.cells if c.attack in ("expired", "wrong-audience")} == {
        Outcome.SKIPPED
    }  # no issuer key given to the in-process probe
    routes = {c.route for c in report.cells}
    assert routes == {
        "GET /whoami",
        "GET /worklogs",
        "POST /worklogs",
        "GET /worklogs/export",
        "POST /exports",
        "GET /exports/{token}",
        "GET /worklogs/{id}",
        "PATCH /worklogs/{id}",
        "DELETE /worklogs/{id}",
    }
    # Every identity reached its own data, the granted engineer its grant's tenant.
    reached = {c.identity for c in report.controls if c.ok}
    assert reached == {
        f"{t}-{r}" for t in ("acme", "globex") for r in ("admin", "member", "viewer")
    } | {"staff-no-grant", "staff-expired", "staff-globex"}


def test_a_route_that_drops_the_scoping_is_caught(
    deployment: Build, tenancy_identities: list[TestIdentity]
) -> None:
    report = probe(deployment(store_class=UnscopedListStore), tenancy_identities)
    assert report.exit_code == 1
    assert ("GET /worklogs", "cross-identity") in leaked(report)
    # Only the listing is broken: single reads stay scoped.
    assert not {r for r, _ in leaked(report)} & {"GET /worklogs/{id}", "PATCH /worklogs/{id}"}


def test_a_middleware_that_trusts_x_tenant_id_is_caught(
    deployment: Build, tenancy_identities: list[TestIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANCY_CONSISTENCY_CHECKS", "0")  # the probe alone must catch it
    report = probe(deployment(edge_middleware=HeaderTenantMiddleware), tenancy_identities)
    assert report.exit_code == 1
    by_attack = {a for _, a in leaked(report)}
    assert by_attack == {"tenant-header"}
    assert ("GET /worklogs/{id}", "tenant-header") in leaked(report)
    assert ("PATCH /worklogs/{id}", "tenant-header") in leaked(report)  # and it wrote


def test_a_grant_check_that_ignores_expiry_is_caught(
    deployment: Build, tenancy_identities: list[TestIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    ignore_grant_expiry(monkeypatch)
    report = probe(deployment(), tenancy_identities)
    assert report.exit_code == 1
    assert {a for _, a in leaked(report)} == {"support-expired-grant"}
    assert ("GET /worklogs", "support-expired-grant") in leaked(report)


def test_a_run_whose_positive_control_fails_is_void(
    deployment: Build, tenancy_identities: list[TestIdentity]
) -> None:
    broken = [
        *tenancy_identities[:-1],
        TestIdentity(
            tenancy_identities[-1].name,
            tenancy_identities[-1].tenant,
            "viewer",
            tenancy_identities[-1].token[:-4] + "AAAA",
        ),
    ]
    report = probe(deployment(), broken)
    assert report.void and report.exit_code == 3
    assert not report.cells  # nothing is judged when the controls fail
    assert any("globex-viewer failed its positive control" in r for r in report.void_reasons)
    with pytest.raises(AssertionError, match="VOID"):
        from tenancy.testing.plugin import assert_isolated_report

        assert_isolated_report(report)
