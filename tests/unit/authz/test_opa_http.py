"""OPAServer's HTTP contract, against a real loopback HTTP/1.1 server scripted as OPA.

The stub (``tests/support/opa_stub.py``) stands in for OPA's REST Data API: there is no
OPA binary here and no Docker engine (``tests/integration/test_opa_container.py`` runs the
same policies on the real image where Docker answers). What is checked is what crosses
the wire: one fixed query path with the facts in the JSON body (never in the URL, Rego
injection CVE-2025-46569), every answer that is not a well-formed decision refused as
``DecisionUnavailable`` (never an allow), and one kept-alive connection.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tenancy.authz import Action, Decision, OPAServer, Resource, build_input
from tenancy.authz.policytests import fixture_bundle
from tenancy.context import Assurance, Principal, PrincipalKind, TenantContext
from tenancy.errors import ConfigurationError, DecisionUnavailable
from tests.support.opa_stub import OPAStub, Recorded, Reply

DECISION_PATH = "/v1/data/tenancy/authz/decision"
ALLOW = {"result": {"allow": True, "reasons": [], "scopes": ["worklogs:read"], "valid_until": None}}


@pytest.fixture
def stub() -> Iterator[OPAStub]:
    with OPAStub() as server:
        yield server
    assert server.handler_errors == []


@pytest.fixture
def opa(stub: OPAStub) -> Iterator[Callable[..., OPAServer]]:
    """``opa(**kwargs)``: an OPAServer on the stub; every one is closed afterwards."""
    made: list[OPAServer] = []

    def make(**kwargs: Any) -> OPAServer:
        server = OPAServer(stub.url, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def context(
    tenant_id: str = "t-acme",
    subject: str = "alice",
    issuer: str = "https://idp",
) -> TenantContext:
    principal = Principal(
        issuer=issuer,
        tenant_id=tenant_id,
        subject=subject,
        kind=PrincipalKind.USER,
        roles=frozenset({"member"}),
        scopes=frozenset({"worklogs:read"}),
        assurance=Assurance.MULTI_FACTOR,
    )
    return TenantContext(
        tenant_id=tenant_id,
        tenant_slug="acme",
        region="eu-central-1",
        principal=principal,
        request_id="req-1",
    )


def sample_input() -> dict[str, Any]:
    return build_input(
        context(),
        service="worklogs",
        action=Action.http("GET", "/worklogs"),
        now=1795000000,
        tenant_status="active",
    )


def strings_in(document: Any) -> set[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(document, str):
        return {document}
    if isinstance(document, dict):
        return set(document) | {s for v in document.values() for s in strings_in(v)}
    if isinstance(document, list):
        return {s for v in document for s in strings_in(v)}
    return set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a well-formed answer --------------------------------------------------------------


def test_allowing_answer_is_an_allowing_decision_asked_on_the_fixed_path(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(Reply(200, ALLOW))
    document = sample_input()

    decision = opa().decide(document)

    assert decision == Decision(
        allow=True,
        reasons=(),
        scopes=("worklogs:read",),
        valid_until=None,
        revision=1,
        engine="opa-server",
    )
    [request] = stub.requests
    assert (request.method, request.target) == ("POST", DECISION_PATH)
    assert request.headers["content-type"].split(";")[0].strip() == "application/json"
    assert request.json() == {"input": document}


def test_denying_answer_is_a_denying_decision_with_its_reasons(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(
        Reply(
            200,
            {
                "result": {
                    "allow": False,
                    "reasons": ["tenant_mismatch", "scope_not_granted"],
                    "scopes": ["worklogs:write"],
                    "valid_until": 1795000060,
                }
            },
        )
    )

    decision = opa().decide(sample_input())

    assert (decision.allow, decision.reasons, decision.valid_until) == (
        False,
        ("scope_not_granted", "tenant_mismatch"),
        1795000060.0,
    )


def test_request_derived_text_never_reaches_the_path(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    hostile = {
        "tenant": "t-acme/../../v1/policies/x?y=1#z",
        "subject": "alice/../../system %2e%2e%2F?x=y#frag",
        "issuer": "https://idp.example/?x=#",
        "route": "/worklogs/../../v1/data/system/main?x=1#a b",
        "service": "worklogs/%2e%2e/v1/policies",
        "resource": "r 1/ünïcødé/☃/\u202e/..",
    }
    document = build_input(
        context(tenant_id=hostile["tenant"], subject=hostile["subject"], issuer=hostile["issuer"]),
        service=hostile["service"],
        action=Action.http("GET", hostile["route"]),
        now=1795000000,
        tenant_status="active",
        resource=Resource(tenant_id=hostile["tenant"], type="worklog", id=hostile["resource"]),
    )
    stub.decide_with(Reply(200, {"result": {"allow": False, "reasons": ["tenant_mismatch"]}}))

    assert opa().decide(document).allow is False

    [request] = stub.requests
    assert request.target == DECISION_PATH
    assert request.json() == {"input": document}
    carried = strings_in(request.json())
    for name, text in hostile.items():
        assert text in carried, name
        assert all(text not in value for value in request.headers.values()), name


# -- anything else is DecisionUnavailable, never an allow ------------------------------


def test_undefined_decision_is_unavailable_not_allow(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(Reply(200, {}))  # OPA's answer when the rule is undefined

    with pytest.raises(DecisionUnavailable):
        opa().decide(sample_input())
    assert [r.target for r in stub.made("POST")] == [DECISION_PATH]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, {"result": {"allow": "yes", "reasons": []}}),
        Reply(200, {"result": {"allow": 1, "reasons": []}}),
        Reply(200, {"result": True}),
        Reply(200, {"result": [{"allow": True}]}),
        Reply(200, {"result": {"reasons": []}}),
        Reply(200, {"result": None}),
        Reply(200, {"result": {"allow": True, "reasons": ["x"]}}),
        Reply(200, {"result": {"allow": True, "reasons": "none"}}),
        Reply(200, {"result": {"allow": True, "scopes": [1]}}),
        Reply(200, {"result": {"allow": True, "valid_until": "tomorrow"}}),
        Reply(200, [ALLOW]),
        Reply(200, raw=b'{"result": {"allow": true', content_type="application/json"),
        Reply(200, raw=b"<html>allow</html>", content_type="text/html"),
    ],
    ids=[
        "allow-string",
        "allow-int",
        "result-true",
        "result-list",
        "no-allow",
        "result-null",
        "allow-with-reasons",
        "reasons-string",
        "scopes-not-strings",
        "valid-until-string",
        "top-level-array",
        "truncated-json",
        "not-json",
    ],
)
def test_malformed_answer_is_unavailable_not_allow(
    reply: Reply, stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(reply)

    with pytest.raises(DecisionUnavailable):
        opa().decide(sample_input())
    assert len(stub.made("POST", DECISION_PATH)) == 1


@pytest.mark.parametrize("status", [500, 503, 404, 400])
def test_http_error_is_unavailable_and_asked_once(
    status: int, stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    # Even an error body that looks like an allow must not be read as one.
    stub.decide_with(
        Reply(status, {"code": "internal_error", "message": "boom", "result": ALLOW["result"]})
    )

    with pytest.raises(DecisionUnavailable):
        opa().decide(sample_input())  # default retries=0: fail fast
    assert len(stub.made("POST", DECISION_PATH)) == 1


def test_slow_answer_times_out_as_unavailable(stub: OPAStub, opa: Callable[..., OPAServer]) -> None:
    # 2 s against a 0.2 s timeout: an implementation that ignored the timeout would
    # visibly hang here, and would then get the allow.
    stub.decide_with(Reply(200, ALLOW, delay=2.0))

    with pytest.raises(DecisionUnavailable):
        opa(timeout=0.2).decide(sample_input())
    assert len(stub.made("POST", DECISION_PATH)) == 1


def test_dropped_connection_is_unavailable(stub: OPAStub, opa: Callable[..., OPAServer]) -> None:
    stub.decide_with(Reply(close=True))

    with pytest.raises(DecisionUnavailable):
        opa().decide(sample_input())
    assert len(stub.made("POST", DECISION_PATH)) == 1


def test_refused_connection_is_unavailable() -> None:
    server = OPAServer(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    try:
        with pytest.raises(DecisionUnavailable):
            server.decide(sample_input())
    finally:
        server.close()


def test_token_is_sent_as_a_bearer_header(stub: OPAStub, opa: Callable[..., OPAServer]) -> None:
    stub.decide_with(Reply(200, ALLOW))

    opa(token="s3cret").decide(sample_input())

    [request] = stub.requests
    assert request.headers["authorization"] == "Bearer s3cret"


# -- connection reuse ------------------------------------------------------------------


def test_decisions_reuse_one_kept_alive_connection(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(Reply(200, ALLOW))
    server = opa()

    decisions = [server.decide(sample_input()) for _ in range(5)]

    assert all(d.allow for d in decisions)
    posts = stub.made("POST", DECISION_PATH)
    assert len(posts) == 5
    assert len({r.client_port for r in posts}) == 1
    assert stub.connections == 1


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://x"},
        {"url": "file:///etc/passwd"},
        {"url": "http://"},
        {"url": "127.0.0.1:8181"},
        {"package": "tenancy/../x"},
        {"package": "tenancy.authz"},
        {"package": "tenancy/authz/"},
        {"package": "tenancy/au thz"},
        {"package": "tenancy/authz?x=1"},
        {"rule": "decision?x"},
        {"rule": "decision/../../policies"},
        {"rule": "decision#x"},
        {"rule": "%2e%2e"},
        {"rule": ""},
        {"rule": "décision"},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": 60},
    ],
    ids=lambda kw: "-".join(f"{k}={v!r}" for k, v in kw.items()),
)
def test_unsafe_configuration_is_refused(kwargs: dict[str, Any], stub: OPAStub) -> None:
    kwargs = dict(kwargs)
    url = kwargs.pop("url", stub.url)
    with pytest.raises(ConfigurationError):
        OPAServer(url, **kwargs)
    assert stub.requests == []


def test_safe_configuration_is_accepted_at_the_bounds(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(Reply(200, {"result": {"allow": False, "reasons": ["x"]}}))

    server = opa(timeout=30, package="tenancy/authz", rule="decision")

    assert server.decide(sample_input()).allow is False
    assert [r.target for r in stub.requests] == [DECISION_PATH]


def test_malformed_port_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        OPAServer("http://127.0.0.1:notaport")


# -- retries ---------------------------------------------------------------------------


def test_decisions_are_never_retried(stub: OPAStub, opa: Callable[..., OPAServer]) -> None:
    # Retries are for pushes; a failed decision is refused at once (fail fast, fail closed).
    stub.decide_with(Reply(500, {"code": "internal_error", "message": "boom"}))

    with pytest.raises(DecisionUnavailable):
        opa(retries=2).decide(sample_input())
    assert len(stub.made("POST", DECISION_PATH)) == 1


# -- pushing a bundle ------------------------------------------------------------------


def test_bundle_is_pushed_as_policies_and_data(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    bundle = fixture_bundle()

    server = opa(bundle=bundle)

    policy_puts = stub.made("PUT", "/v1/policies/")
    ids = [r.target.removeprefix("/v1/policies/") for r in policy_puts]
    assert len(ids) == len(set(ids)) == len(bundle.modules)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", policy_id) for policy_id in ids)
    assert "tenancy_authz_authz" in ids
    assert sorted(r.body.decode() for r in policy_puts) == sorted(bundle.modules.values())
    assert all(r.headers["content-type"] == "text/plain" for r in policy_puts)

    data_puts = stub.made("PUT", "/v1/data/")
    assert [r.target for r in data_puts] == ["/v1/data/tenancy"]
    assert data_puts[0].json() == bundle.data()["tenancy"]
    assert stub.made("POST") == []
    assert server.revision == bundle.revision == 1


def test_bundle_change_pushes_data_again_and_moves_the_revision(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    bundle = fixture_bundle()
    server = opa(bundle=bundle)
    before = len(stub.requests)

    revision = bundle.bind_roles("t", "alice", ["viewer"])

    assert revision == bundle.revision == 2
    later = stub.requests[before:]
    assert [(r.method, r.target) for r in later] == [("PUT", "/v1/data/tenancy")]
    assert later[0].json()["role_bindings"] == {"t": {"alice": ["viewer"]}}
    assert server.revision == 2

    stub.decide_with(Reply(200, ALLOW))
    assert server.decide(sample_input()).revision == 2


def test_failed_policy_push_is_a_configuration_error(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.on("PUT", "/v1/policies/", Reply(500, {"code": "internal_error", "message": "boom"}))

    with pytest.raises(ConfigurationError):
        opa(bundle=fixture_bundle())
    assert len(stub.made("PUT", "/v1/policies/")) >= 1
    assert stub.policies == {}


def test_failed_data_push_keeps_the_old_revision(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    bundle = fixture_bundle()
    server = opa(bundle=bundle)
    stub.on("PUT", "/v1/data/", Reply(500, {"code": "internal_error", "message": "boom"}))

    with pytest.raises(DecisionUnavailable):
        bundle.bind_roles("t", "alice", ["admin"])

    # Decisions keep naming the revision OPA actually holds, not the bundle's new one.
    assert (bundle.revision, server.revision) == (2, 1)
    stub.decide_with(Reply(200, ALLOW))
    assert server.decide(sample_input()).revision == 1


def test_concurrent_changes_leave_opa_on_the_newest_data(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    bundle = fixture_bundle()
    server = opa(bundle=bundle, timeout=5)
    first: list[Recorded] = []
    first_arrived, second_applied = threading.Event(), threading.Event()

    def hold_the_first(request: Recorded) -> None:
        # A network or scheduler delay: OPA gets the older push after the newer one (or,
        # if pushes are serialised, no newer one arrives and this gives up after 1 s).
        if not first:
            first.append(request)
            first_arrived.set()
            second_applied.wait(timeout=1.0)

    def note_the_second(request: Recorded) -> None:
        if first and request is not first[0]:
            second_applied.set()

    stub.on("PUT", "/v1/data/", Reply(204, hook=hold_the_first, after=note_the_second))
    granting = threading.Thread(target=bundle.bind_roles, args=("t-acme", "alice", ["admin"]))
    granting.start()
    assert first_arrived.wait(timeout=5)

    bundle.unbind_roles("t-acme", "alice")  # the revocation, revision 3
    granting.join(timeout=5)

    assert not granting.is_alive()
    assert bundle.revision == 3
    assert server.revision == 3
    assert stub.data["tenancy"]["role_bindings"] == {"t-acme": {}}, json.dumps(
        stub.data["tenancy"]["role_bindings"]
    )


# -- a bundle OPA loads itself ---------------------------------------------------------


def provenance(answer: dict[str, Any], **bundles: str) -> dict[str, Any]:
    """``answer`` as OPA gives it with ``?provenance``: the revision of each bundle."""
    return {
        **answer,
        "provenance": {
            "version": "1.4.2",
            "bundles": {name: {"revision": revision} for name, revision in bundles.items()},
        },
    }


def test_named_bundle_is_never_pushed_and_decisions_carry_its_revision(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    stub.decide_with(Reply(200, provenance(ALLOW, tenancy="a1b2")))

    server = opa(bundle_name="tenancy")
    decision = server.decide(sample_input())

    assert stub.made("PUT") == []  # OPA owns the policies and data
    assert decision.allow and decision.bundle == "a1b2"
    [request] = stub.requests
    assert request.target == DECISION_PATH + "?provenance=True"
    assert request.json() == {"input": sample_input()}


def test_a_new_bundle_revision_moves_the_revision_once(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    server = opa(bundle_name="tenancy")
    stub.decide_with(Reply(200, provenance(ALLOW, tenancy="r1")))
    first = server.decide(sample_input())
    again = server.decide(sample_input())
    stub.decide_with(Reply(200, provenance(ALLOW, tenancy="r2")))
    after = server.decide(sample_input())

    assert first.revision == again.revision  # same bundle: cached decisions stay valid
    assert after.revision > first.revision and after.bundle == "r2"
    assert server.revision == after.revision


@pytest.mark.parametrize(
    "answer",
    [
        ALLOW,  # no provenance at all
        provenance(ALLOW),  # OPA has activated no bundle yet
        provenance(ALLOW, other="r1"),  # only another bundle
        provenance(ALLOW, tenancy=""),
        {**ALLOW, "provenance": {"bundles": {"tenancy": {"revision": 7}}}},
        {**ALLOW, "provenance": ["tenancy"]},
    ],
    ids=["none", "no-bundles", "other-bundle", "empty", "not-a-string", "malformed"],
)
def test_an_allow_without_the_bundles_revision_is_refused(
    answer: dict[str, Any], stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    # An allow from an OPA that has not loaded the bundle could come from any policy it
    # holds: refused, never trusted.
    stub.decide_with(Reply(200, answer))

    with pytest.raises(DecisionUnavailable, match="has not activated bundle 'tenancy'"):
        opa(bundle_name="tenancy").decide(sample_input())


def test_pushing_and_naming_a_bundle_are_exclusive(stub: OPAStub) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        OPAServer(stub.url, bundle=fixture_bundle(), bundle_name="tenancy")
    with pytest.raises(ConfigurationError, match="empty"):
        OPAServer(stub.url, bundle_name="")
    assert stub.requests == []


def test_a_pushed_bundle_is_recorded_by_its_content_revision(
    stub: OPAStub, opa: Callable[..., OPAServer]
) -> None:
    bundle = fixture_bundle()
    stub.decide_with(Reply(200, ALLOW))

    decision = opa(bundle=bundle).decide(sample_input())

    assert decision.bundle == bundle.bundle_revision
    assert "provenance" not in stub.made("POST")[0].target
