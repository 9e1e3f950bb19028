"""Sessions and jobs go to the database of the tenant's home region, or are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select

from tenancy.context import bind
from tenancy.errors import ConfigurationError, NoTenantContext, TenantContextConflict, WrongRegion
from tenancy.events import MemorySink
from tenancy.problems import problem_response
from tenancy.residency import RegionalEngines, RegionalSessions, ResidencyViolation
from tenancy.tenants import Tenant
from tests.support.scoping_models import Project
from tests.unit.residency.conftest import EU, EU_TENANT, US, context_of, file_contains, tenant


def instance(engines: dict[str, Engine], region: str, events: MemorySink) -> RegionalSessions:
    """One service instance: its region, and the engines of every region."""
    return RegionalSessions(RegionalEngines(engines, region=region, events=events))


def only_refusal(events: MemorySink) -> dict[str, str | None]:
    assert events.actions() == ["residency.refused"]
    event = events.events[0]
    return {"tenant_id": event.tenant_id, **event.details}


def test_eu_tenant_sessions_use_the_eu_engine_and_us_tenant_sessions_the_us_engine(
    regional_engines: dict[str, Engine],
    db_files: dict[str, Path],
    events: MemorySink,
    eu_tenant: Tenant,
    us_tenant: Tenant,
) -> None:
    eu_instance = instance(regional_engines, EU, events)
    us_instance = instance(regional_engines, US, events)
    with bind(context_of(eu_tenant)), eu_instance.begin() as session:
        assert session.get_bind() is regional_engines[EU]
        session.add(Project(id="p-eu", name="eu-only-marker-7d1f"))
    with bind(context_of(us_tenant)), us_instance.begin() as session:
        assert session.get_bind() is regional_engines[US]
        session.add(Project(id="p-us", name="us-only-marker-3c9a"))
    with bind(context_of(eu_tenant)), eu_instance() as session:
        assert session.scalars(select(Project.name)).all() == ["eu-only-marker-7d1f"]
    for engine in regional_engines.values():
        engine.dispose()

    assert file_contains(db_files[EU], "eu-only-marker-7d1f")
    assert not file_contains(db_files[US], "eu-only-marker-7d1f")
    assert file_contains(db_files[US], "us-only-marker-3c9a")
    assert not file_contains(db_files[EU], "us-only-marker-3c9a")
    assert events.events == []


def test_eu_tenant_session_on_a_us_instance_is_refused_and_audited(
    regional_engines: dict[str, Engine],
    events: MemorySink,
    eu_tenant: Tenant,
) -> None:
    us_instance = instance(regional_engines, US, events)
    with bind(context_of(eu_tenant)), pytest.raises(ResidencyViolation) as refused:
        us_instance()

    assert isinstance(refused.value, WrongRegion)
    assert (refused.value.home_region, refused.value.region) == (EU, US)
    assert only_refusal(events) == {
        "tenant_id": eu_tenant.id,
        "home_region": EU,
        "region": US,
        "attempted": "session",
    }
    assert events.events[0].actor == "alice"
    assert events.events[0].request_id == "req-1"


def test_residency_violation_is_a_403_wrong_region_problem_without_the_regions(
    regional_engines: dict[str, Engine],
    events: MemorySink,
    eu_tenant: Tenant,
) -> None:
    with bind(context_of(eu_tenant)), pytest.raises(ResidencyViolation) as refused:
        instance(regional_engines, US, events)()
    response = problem_response(refused.value, instance="/worklogs")
    assert response.status_code == 403
    assert b"urn:tenancy:problem:wrong-region" in response.body
    assert EU.encode() not in response.body and US.encode() not in response.body


def test_tenant_without_an_engine_for_its_region_is_refused_and_audited(
    regional_engines: dict[str, Engine],
    events: MemorySink,
    eu_tenant: Tenant,
) -> None:
    only_us = RegionalEngines({US: regional_engines[US]}, region=EU, events=events)
    with pytest.raises(ResidencyViolation, match="homed in another region"):
        only_us.engine_for(eu_tenant)
    refusal = only_refusal(events)
    assert refusal["tenant_id"] == eu_tenant.id
    assert events.events[0].reason == "no database engine for the tenant's home region"


def test_engine_for_current_needs_a_bound_tenant(
    regional_engines: dict[str, Engine], events: MemorySink
) -> None:
    with pytest.raises(NoTenantContext):
        RegionalEngines(regional_engines, region=EU, events=events).engine_for_current()


def test_session_is_pinned_to_the_tenant_it_was_routed_for(
    regional_engines: dict[str, Engine],
    events: MemorySink,
    eu_tenant: Tenant,
) -> None:
    neighbour = tenant(EU_TENANT[:-2] + "e1", EU)
    sessions = instance(regional_engines, EU, events)
    with bind(context_of(eu_tenant)):
        session = sessions()
    with bind(context_of(neighbour)), pytest.raises(TenantContextConflict), session:
        session.scalars(select(Project)).all()


def test_job_for_an_eu_tenant_on_a_us_instance_is_refused_audited_and_writes_nothing(
    regional_engines: dict[str, Engine],
    db_files: dict[str, Path],
    events: MemorySink,
    eu_tenant: Tenant,
) -> None:
    us_instance = instance(regional_engines, US, events)
    ran = False
    with (
        pytest.raises(ResidencyViolation),
        us_instance.for_job(eu_tenant, region=US, job="nightly-rollup") as session,
    ):
        ran = True
        session.add(Project(id="p-job", name="job-marker-51be"))
    assert ran is False
    assert only_refusal(events) == {
        "tenant_id": eu_tenant.id,
        "home_region": EU,
        "region": US,
        "attempted": "job:nightly-rollup",
    }
    for engine in regional_engines.values():
        engine.dispose()
    assert not any(file_contains(path, "job-marker-51be") for path in db_files.values())


def test_job_for_an_eu_tenant_on_an_eu_instance_writes_to_the_eu_database_only(
    regional_engines: dict[str, Engine],
    db_files: dict[str, Path],
    events: MemorySink,
    eu_tenant: Tenant,
) -> None:
    eu_instance = instance(regional_engines, EU, events)
    with bind(context_of(eu_tenant)), eu_instance.for_job(eu_tenant, region=EU) as session:
        session.add(Project(id="p-job", name="job-marker-9e02"))
    for engine in regional_engines.values():
        engine.dispose()
    assert file_contains(db_files[EU], "job-marker-9e02")
    assert not file_contains(db_files[US], "job-marker-9e02")
    assert events.events == []


def test_job_under_another_tenants_context_is_refused(
    regional_engines: dict[str, Engine],
    events: MemorySink,
    eu_tenant: Tenant,
    us_tenant: Tenant,
) -> None:
    eu_instance = instance(regional_engines, EU, events)
    with (
        bind(context_of(us_tenant)),
        pytest.raises(TenantContextConflict),
        eu_instance.for_job(eu_tenant, region=EU),
    ):
        pass


def test_job_region_that_is_not_the_engines_region_is_a_configuration_error(
    regional_engines: dict[str, Engine],
    events: MemorySink,
    us_tenant: Tenant,
) -> None:
    eu_instance = instance(regional_engines, EU, events)
    with pytest.raises(ConfigurationError), eu_instance.for_job(us_tenant, region=US):
        pass


@pytest.mark.parametrize("regions", [{"EU": "eu"}, {"eu-central-1": "not an engine"}])
def test_malformed_regional_configuration_is_refused(regions: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RegionalEngines(regions, region=EU)  # type: ignore[arg-type]


def test_one_database_configured_for_two_regions_is_refused(
    regional_engines: dict[str, Engine],
    db_files: dict[str, Path],
) -> None:
    twin = create_engine(f"sqlite:///{db_files[EU]}")
    with pytest.raises(ConfigurationError, match="one database"):
        RegionalEngines({EU: regional_engines[EU], US: twin}, region=EU)
    twin.dispose()


def test_instance_region_must_be_well_formed(regional_engines: dict[str, Engine]) -> None:
    with pytest.raises(ConfigurationError):
        RegionalEngines(regional_engines, region="Europe")


def test_sessions_refuse_a_fixed_bind(regional_engines: dict[str, Engine]) -> None:
    engines = RegionalEngines(regional_engines, region=EU)
    with pytest.raises(ConfigurationError):
        RegionalSessions(engines, bind=regional_engines[EU])
