"""An engine that errs or answers nonsense is no decision: 503, never 403, never 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tenancy.authz import Authorizer, Decision, PolicyBundle
from tenancy.errors import DecisionUnavailable
from tenancy.identity import TokenVerifier
from tenancy.middleware import TenancyMiddleware
from tenancy.tenants import Tenant, TenantRegistry
from tests.conftest import REGION, TokenFactory, bearer
from tests.unit.authz.conftest import EngineFactory

pytestmark = pytest.mark.anyio

# Each errs at run time on this input. rego-cpp used to swallow such errors: the first
# two answered a plain deny (a 403), the third an allow, because the error sat under `not`.
RUNTIME_ERRORS = {
    "division by zero": 'decision := {"allow": 1 / input.zero > 0, "reasons": []}',
    "built-in type error": 'decision := {"allow": count(input.n) > 0, "reasons": []}',
    "error under not": (
        "default allow := false\nallow if not _denied\n"
        "_denied if count(input.n) > 0\n"
        'decision := {"allow": allow, "reasons": []}'
    ),
    "error beside a deny": 'decision := {"allow": false, "reasons": ["x"], "q": 1 / input.zero}',
}


@pytest.mark.parametrize("rule", RUNTIME_ERRORS.values(), ids=RUNTIME_ERRORS.keys())
def test_runtime_error_in_the_policy_is_unavailable_on_every_engine(
    rule: str, engine_factory: EngineFactory
) -> None:
    engine = engine_factory(PolicyBundle({"authz.rego": f"package tenancy.authz\n{rule}\n"}, {}))
    with pytest.raises(DecisionUnavailable):
        engine.decide({"zero": 0, "n": 5})


class Answering:
    """A custom decision point that answers ``answer``, whatever it is."""

    name = "custom"
    revision = 1

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def decide(self, input: Mapping[str, Any]) -> Decision:
        return self.answer  # type: ignore[return-value]


NON_DECISIONS = {
    "true": True,
    "a decision document": {"allow": True, "reasons": []},
    "a string": "allow",
    "a list": [True],
    "a Decision whose allow is not a bool": Decision(allow="yes"),  # type: ignore[arg-type]
    "an allow with reasons to deny": Decision(allow=True, reasons=("tenant_mismatch",)),
    "nothing": None,
}


@pytest.mark.parametrize("answer", NON_DECISIONS.values(), ids=NON_DECISIONS.keys())
async def test_custom_engine_answering_a_non_decision_is_a_503_problem(
    answer: object,
    verifier: TokenVerifier,
    registry: TenantRegistry,
    acme: Tenant,
    token_for: TokenFactory,
) -> None:
    handled: list[str] = []

    async def worklogs(request: Request) -> JSONResponse:
        handled.append(request.url.path)
        return JSONResponse([])

    inner = Starlette(routes=[Route("/worklogs", worklogs)])
    authorizer = Authorizer(Answering(answer), service="worklogs", cache=None)
    app = TenancyMiddleware(
        inner,
        verifier=verifier,
        tenants=registry,
        region=REGION,
        authorizer=authorizer,
        routes=inner.routes,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://worklogs"
    ) as client:
        response = await client.get("/worklogs", headers=bearer(token_for(acme)))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:tenancy:problem:decision-unavailable"
    assert handled == []
