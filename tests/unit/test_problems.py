"""The error → problem+json table: stable types, no leaking detail."""

from __future__ import annotations

import json

import pytest

from tenancy import errors
from tenancy.problems import PROBLEMS, problem_body, problem_response


def all_error_classes() -> list[type[errors.TenancyError]]:
    found, stack = [], [errors.TenancyError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == "tenancy.errors"]


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_unique_code_and_a_problem(cls: type[errors.TenancyError]) -> None:
    codes = [c.code for c in all_error_classes()]
    assert codes.count(cls.code) == 1
    exc = cls("x") if cls is not errors.InvalidRequest else cls("x", errors={"a": "b"})
    body = problem_body(exc)
    assert body["type"] == f"urn:tenancy:problem:{cls.code}"
    assert 400 <= body["status"] <= 599


def test_token_failure_reason_never_reaches_the_body() -> None:
    response = problem_response(errors.InvalidToken("signature by kid k1 failed"))
    body = json.loads(response.body)
    assert "k1" not in response.body.decode()
    assert body["status"] == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tenancy", error="invalid_token"'


def test_not_found_and_unknown_tenant_share_the_status() -> None:
    assert PROBLEMS[errors.NotFound].status == PROBLEMS[errors.UnknownTenant].status == 404
    assert "detail" not in problem_body(errors.NotFound("worklog 123 belongs to globex"))


@pytest.mark.parametrize(("exc", "status"), [
    (errors.PayloadTooLarge("request body is larger than 16384 bytes"), 413),
    (errors.UnsupportedMediaType("request body must be JSON"), 415),
])
def test_body_refusals_map_to_413_and_415_with_their_detail(exc: errors.InvalidRequest,
                                                            status: int) -> None:
    assert isinstance(exc, errors.InvalidRequest)  # still a refused request: one tree
    response = problem_response(exc, instance="/worklogs")
    body = json.loads(bytes(response.body))
    assert response.status_code == body["status"] == status
    assert response.headers["content-type"] == "application/problem+json"
    assert body["type"] == f"urn:tenancy:problem:{exc.code}"
    assert body["detail"] == str(exc)
    assert PROBLEMS[errors.InvalidRequest].status == 422  # the parent keeps its status
