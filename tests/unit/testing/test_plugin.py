"""The pytest plugin as a service developer uses it: a small notes service of their own,
probed in-process with the plugin's tenants, identities and ``assert_isolated``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy.context import current, current_or_none
from tenancy.identity import TokenVerifier
from tenancy.middleware import TenancyMiddleware
from tenancy.problems import exception_handlers
from tenancy.tenants import TenantRegistry
from tenancy.testing.plugin import Role, TestIdentity, check_isolation
from tenancy.testing.probe import Outcome, ProbeReport, load_openapi, run_probe
from tenancy.testing.probe.config import parse_config

OPENAPI = {
    "openapi": "3.1.0",
    "paths": {
        "/openapi.json": {"get": {"security": []}},
        "/notes": {
            "get": {},
            "post": {
                "requestBody": {
                    "content": {"application/json": {"example": {"text": "hello {canary}"}}}
                }
            },
        },
        "/notes/{id}": {"get": {}, "delete": {}},
    },
}
SEED = {
    "POST /notes": {
        "body": {"text": "note {canary}"},
        "seed": True,
        "capture": {"id": {"from": "header:location", "pattern": "^/notes/(.+)$"}},
    }
}


def notes_app(
    verifier: TokenVerifier, registry: TenantRegistry, *, broken: bool = False
) -> Starlette:
    """Notes per tenant in memory. ``broken``: reading one note forgets the tenant."""
    notes: dict[str, tuple[str, str]] = {}  # id -> (tenant id, text)

    async def listing(request: Request) -> Response:
        mine = current().tenant_id
        return JSONResponse([{"id": k, "text": t} for k, (o, t) in notes.items() if o == mine])

    async def create(request: Request) -> Response:
        note_id = uuid.uuid4().hex
        notes[note_id] = (current().tenant_id, str((await request.json())["text"]))
        return Response(status_code=201, headers={"Location": f"/notes/{note_id}"})

    def find(request: Request) -> tuple[str, str]:
        found = notes.get(request.path_params["id"])
        if found is None or (not broken and found[0] != current().tenant_id):
            return ("", "")
        return found

    async def read(request: Request) -> Response:
        owner, text = find(request)
        return JSONResponse({"text": text}) if owner else Response(status_code=404)

    async def delete(request: Request) -> Response:
        owner, _ = find(request)
        if not owner or owner != current().tenant_id:
            return Response(status_code=404)
        del notes[request.path_params["id"]]
        return Response(status_code=204)

    async def openapi(request: Request) -> Response:
        assert current_or_none() is None  # public: no context
        return JSONResponse(OPENAPI)

    routes = [
        Route("/notes", listing, methods=["GET"]),
        Route("/notes", create, methods=["POST"]),
        Route("/notes/{id}", read, methods=["GET"]),
        Route("/notes/{id}", delete, methods=["DELETE"]),
        Route("/openapi.json", openapi),
    ]
    return Starlette(
        routes=routes,
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(
                TenancyMiddleware,
                verifier=verifier,
                tenants=registry,
                region="eu-central-1",
                public_paths=("/openapi.json",),
            )
        ],
    )


@pytest.fixture
def tenancy_roles() -> Mapping[str, Role]:
    return {"writer": Role(("notes:write",)), "reader": Role(("notes:read",))}


def test_assert_isolated_passes_on_a_sound_service(
    assert_isolated: Callable[..., ProbeReport],
    tenancy_verifier: TokenVerifier,
    tenancy_registry: TenantRegistry,
    tenancy_identities: list[TestIdentity],
) -> None:
    report = assert_isolated(
        notes_app(tenancy_verifier, tenancy_registry), routes=SEED, exclude=("/openapi.json",)
    )
    assert [i.name for i in tenancy_identities] == [
        "acme-writer",
        "acme-reader",
        "globex-writer",
        "globex-reader",
    ]
    assert set(report.routes) == {
        "GET /notes",
        "POST /notes",
        "GET /notes/{id}",
        "DELETE /notes/{id}",
    }
    assert all(
        any(c.ok for c in report.controls if c.identity == i.name) for i in tenancy_identities
    )
    assert report.summary["leaked"] == 0 and report.summary["enforced"] > 50


def test_assert_isolated_fails_naming_the_leak(
    assert_isolated: Callable[..., ProbeReport],
    tenancy_verifier: TokenVerifier,
    tenancy_registry: TenantRegistry,
) -> None:
    with pytest.raises(AssertionError) as failed:
        assert_isolated(
            notes_app(tenancy_verifier, tenancy_registry, broken=True),
            routes=SEED,
            exclude=("/openapi.json",),
        )
    message = str(failed.value)
    assert "LEAKED GET /notes/{id}" in message and "attack=cross-identity" in message
    assert "DELETE" not in message  # deleting still checks the owner


def test_routes_come_from_the_services_openapi_document(
    tenancy_verifier: TokenVerifier,
    tenancy_registry: TenantRegistry,
    tenancy_identities: list[TestIdentity],
) -> None:
    app = notes_app(tenancy_verifier, tenancy_registry)
    raw = {
        "openapi": "/openapi.json",
        "identities": [
            {"name": i.name, "tenant": i.tenant.slug, "token": {"value": i.token}}
            for i in tenancy_identities
        ],
        "routes": SEED,
    }
    report = asyncio.run(run_probe(parse_config(raw), app=app))
    assert set(report.routes) == {
        "GET /notes",
        "POST /notes",
        "GET /notes/{id}",
        "DELETE /notes/{id}",
    }  # the public document route is left out
    assert report.exit_code == 0
    assert [
        r.body
        for r in load_openapi(str(OPENAPI).replace("'", '"'), where="doc")
        if r.key == "POST /notes"
    ] == [{"text": "hello {canary}"}]


def test_an_unreachable_target_is_void_not_clean(tenancy_identities: list[TestIdentity]) -> None:
    raw = {
        "identities": [
            {"name": i.name, "tenant": i.tenant.slug, "token": {"value": i.token}}
            for i in tenancy_identities
        ],
        "routes": {**SEED, "GET /notes": {}},
        "timeout": 2,
    }
    report = asyncio.run(run_probe(parse_config(raw), target="http://127.0.0.1:9"))
    assert report.void and report.exit_code == 3 and not report.cells
    assert "no data was created for tenant 'acme'" in report.void_reasons[0]


def test_as_tenant_binds_a_provisioned_tenant(as_tenant: Callable[..., Any]) -> None:
    assert current_or_none() is None
    with as_tenant("globex", scopes=["notes:read"]) as ctx:
        assert current().tenant_slug == "globex" and ctx.has_scope("notes:read")
    assert current_or_none() is None


def test_check_isolation_reports_cells_for_every_identity_pair(
    tenancy_verifier: TokenVerifier,
    tenancy_registry: TenantRegistry,
    tenancy_identities: list[TestIdentity],
) -> None:
    report = check_isolation(
        notes_app(tenancy_verifier, tenancy_registry),
        tenancy_identities,
        routes=SEED,
        exclude=("/openapi.json",),
    )
    cross = {
        (c.actor, c.victim)
        for c in report.cells
        if c.attack == "cross-identity" and c.outcome is Outcome.ENFORCED
    }
    assert cross == {
        ("acme-writer", "globex"),
        ("acme-reader", "globex"),
        ("globex-writer", "acme"),
        ("globex-reader", "acme"),
    }


@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("0", "0")])
def test_the_plugin_turns_consistency_mode_on_unless_told_otherwise(
    tmp_path: Path, given: str | None, seen: str
) -> None:
    (tmp_path / "test_seen.py").write_text(
        "import os\n\ndef test_seen():\n"
        f"    assert os.environ.get('TENANCY_CONSISTENCY_CHECKS') == {seen!r}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TENANCY_CONSISTENCY_CHECKS"}
    if given is not None:
        env["TENANCY_CONSISTENCY_CHECKS"] = given
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_seen.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
