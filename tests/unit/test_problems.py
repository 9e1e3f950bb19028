"""The error → problem+json table: stable types, no leaking detail."""

from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil

import pytest

from tenancy import errors
from tenancy.problems import PROBLEMS, problem_body, problem_response


def all_error_classes() -> list[type[errors.TenancyError]]:
    found, stack = [], [errors.TenancyError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    # A class with two parents in the tree (ExportGone: ExportError and NotFound) is
    # reached twice.
    return [c for c in dict.fromkeys(found) if c.__module__ == "tenancy.errors"]


def an_instance(cls: type[errors.TenancyError]) -> errors.TenancyError:
    """``cls`` built with a message, plus what its constructor requires."""
    if issubclass(cls, errors.InvalidRequest):
        return cls("x", errors={"a": "b"})
    if cls is errors.RecordRejected:
        return errors.RecordRejected("x", index=0)
    if cls is errors.ResidencyViolation:
        return errors.ResidencyViolation(
            "x", tenant_id=None, home_region=None, region=None, attempted="read"
        )
    return cls("x")


def test_every_error_of_the_library_lives_in_the_one_tree() -> None:
    import tenancy

    for module in pkgutil.walk_packages(tenancy.__path__, "tenancy."):
        if module.name.endswith(".__main__"):
            continue  # runs the command line when imported
        with contextlib.suppress(ImportError):  # an optional extra's library is absent
            importlib.import_module(module.name)
    found, stack = [], [errors.TenancyError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    stray = [
        f"{c.__module__}.{c.__qualname__}"
        for c in found
        if c.__module__.startswith("tenancy.") and c.__module__ != "tenancy.errors"
    ]
    assert not stray


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_unique_code_and_a_problem(cls: type[errors.TenancyError]) -> None:
    # A class without a code of its own (ResidencyViolation) is answered as its parent.
    own = [c.__dict__["code"] for c in all_error_classes() if "code" in c.__dict__]
    assert own.count(cls.code) == 1
    body = problem_body(an_instance(cls))
    assert body["type"] == f"urn:tenancy:problem:{cls.code}"
    assert 400 <= body["status"] <= 599


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_reason_for_logs(cls: type[errors.TenancyError]) -> None:
    exc = an_instance(cls)
    assert isinstance(exc.reason, str) and exc.reason
    bare = cls.__new__(cls)
    errors.TenancyError.__init__(bare)
    assert bare.reason == cls.code


def test_reason_defaults_to_the_code_and_constructors_keep_theirs() -> None:
    assert errors.NotFound("worklog 1").reason == "not-found"
    assert errors.NotFound("x", reason="purged").reason == "purged"
    assert errors.InvalidToken("expired").reason == "expired"
    assert errors.AccessDenied(("no-scope", "no-mfa")).reason == "no-scope,no-mfa"
    assert errors.AccessDenied().reason == "denied"
    assert errors.DecryptionFailed().reason == "decryption failed"
    assert errors.ContributionRefused("t1").reason == "contribution-disabled"
    assert errors.ConfigurationError("x", reason="").reason == "configuration-error"
    assert (
        errors.LayerMismatch(layer="rls", expected_layer="token").reason
        == "rls-disagrees-with-token"
    )


def test_token_failure_reason_never_reaches_the_body() -> None:
    response = problem_response(errors.InvalidToken("signature by kid k1 failed"))
    body = json.loads(response.body)
    assert "k1" not in response.body.decode()
    assert body["status"] == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tenancy", error="invalid_token"'


def test_not_found_and_unknown_tenant_share_the_status() -> None:
    assert PROBLEMS[errors.NotFound].status == PROBLEMS[errors.UnknownTenant].status == 404
    assert "detail" not in problem_body(errors.NotFound("worklog 123 belongs to globex"))


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.PayloadTooLarge("request body is larger than 16384 bytes"), 413),
        (errors.UnsupportedMediaType("request body must be JSON"), 415),
    ],
)
def test_body_refusals_map_to_413_and_415_with_their_detail(
    exc: errors.InvalidRequest, status: int
) -> None:
    assert isinstance(exc, errors.InvalidRequest)  # still a refused request: one tree
    response = problem_response(exc, instance="/worklogs")
    body = json.loads(bytes(response.body))
    assert response.status_code == body["status"] == status
    assert response.headers["content-type"] == "application/problem+json"
    assert body["type"] == f"urn:tenancy:problem:{exc.code}"
    assert body["detail"] == str(exc)
    assert PROBLEMS[errors.InvalidRequest].status == 422  # the parent keeps its status
