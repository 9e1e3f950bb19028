"""Generated bodies against every write route of the example, as a client sends them.

The stack is the demo's: the edge and the worklogs backend under uvicorn, the edge calling
the backend with aiohttp, on PostgreSQL as the application role (schema from the
migrations, forced RLS) and, for comparison, on SQLite. Hypothesis
generates bodies (any Unicode with NUL and lone surrogates, huge integers and floats,
deep nesting, wrong types, invalid UTF-8, oversized bodies, other content types, and
worklogs that look valid) for ``POST /worklogs``, ``PATCH /worklogs/{id}`` and
``POST /exports``. For every one: never a 5xx; a refusal is problem+json (413, 415 or
422) and stores nothing, in any tenant; a success stores exactly what it says.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from examples.tests.integration.test_db_matrix import migrated_worklogs
from tenancy.exports import ExportService, create_schema
from tenancy.identity import DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
from tenancy.keys import LocalKeyProvider, RootKey, TenantKeys
from tenancy.propagation import ContextTokenVerifier, ServiceKeyring, trusted_service
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples.edge.app import MAX_BODY_BYTES as EDGE_MAX_BODY_BYTES
from tenancy_examples.edge.app import create_app as create_edge
from tenancy_examples.worklogs.app import create_app as create_worklogs
from tenancy_examples.worklogs.payload import MAX_BODY_BYTES
from tenancy_examples.worklogs.personal_data import WORKLOG_FIELDS
from tenancy_examples.worklogs.store import WorklogStore
from tests.support.browser import serve

REGION = "eu-central-1"
READ, WRITE, EXPORT = "worklogs:read", "worklogs:write", "worklogs:export"
ENTRY = {"description": "design review", "minutes": 45, "day": "2026-11-22"}
EXAMPLES = 400  # per route and database
WRITES = {"POST /worklogs": 201, "PATCH /worklogs/{id}": 200, "POST /exports": 201}
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/merge-patch+json")


@dataclass(frozen=True)
class Stack:
    client: httpx.Client  # to the edge
    owner: Engine  # sees every tenant's rows (PostgreSQL: a superuser)
    acme: Tenant
    globex: Tenant
    worklog_id: str  # acme's, the target of PATCH
    tokens: dict[str, str]  # users' access tokens for the edge, by tenant slug

    def headers(self, tenant: Tenant, content_type: str | None = None) -> dict[str, str]:
        sent = {"Authorization": f"Bearer {self.tokens[tenant.slug]}"}
        if content_type is not None:
            sent["content-type"] = content_type
        return sent

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.owner.connect() as conn:
            return {
                "worklogs": [
                    tuple(r)
                    for r in conn.execute(
                        text(
                            "SELECT tenant_id, id, author, description, minutes, day, comment "
                            "FROM worklogs ORDER BY tenant_id, id"
                        )
                    )
                ],
                "exports": [
                    tuple(r)
                    for r in conn.execute(
                        text("SELECT tenant_id, id FROM tenancy_exports ORDER BY tenant_id, id")
                    )
                ],
            }


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("fuzz")
    if request.param == "postgresql":
        with migrated_worklogs() as (owner, app):  # the app engine is the app role
            yield from build(tmp, owner=owner, app=app, create=False)
    else:
        engine = create_engine(f"sqlite:///{tmp / 'fuzz.db'}")
        try:
            yield from build(tmp, owner=engine, app=engine, create=True)
        finally:
            engine.dispose()


def build(tmp: Path, *, owner: Engine, app: Engine, create: bool) -> Iterator[Stack]:
    registry = TenantRegistry(app)
    keys = TenantKeys(
        app, [LocalKeyProvider(tmp / "keks.json", root=RootKey.load_or_create(tmp / "root.key"))]
    )
    store = WorklogStore(app, keys=keys)
    if create:
        registry.create_schema()
        keys.create_schema()
        store.create_schema()
        create_schema(app)
    acme = registry.provision("acme", region=REGION, display_name="Acme")
    globex = registry.provision("globex", region=REGION, display_name="Globex")
    for tenant in (acme, globex):
        keys.provision(tenant.id)
    exports = ExportService(
        app,
        source=functools.partial(store.list, limit=10_000),
        fields=WORKLOG_FIELDS,
        keys=keys,
        signing_key=os.urandom(32),
    )
    ring = ServiceKeyring.generate("edge")
    backend = create_worklogs(
        store=store,
        tenants=registry,
        region=REGION,
        exports=exports,
        verifier=ContextTokenVerifier(
            audience="worklogs",
            services=[
                trusted_service(
                    "edge",
                    keys=JWKSKeySource(ring.jwks, algorithms=("EdDSA",)),
                    scopes=frozenset({READ, WRITE, EXPORT}),
                )
            ],
        ),
    )
    issuer = DevIssuer.load_or_create(tmp / "issuer")
    users = TokenVerifier(
        [
            trusted_issuer(
                issuer.issuer,
                audience="edge",
                algorithms=["EdDSA"],
                keys=JWKSKeySource(issuer.jwks, algorithms=["EdDSA"]),
            )
        ]
    )
    # Both under uvicorn, the edge calling the backend with aiohttp: as in the demo.
    with serve(backend) as url:
        edge = create_edge(
            verifier=users, tenants=registry, region=REGION, keyring=ring, worklogs_url=url
        )
        with serve(edge) as edge_url, httpx.Client(base_url=edge_url, timeout=30) as client:
            tokens = {
                t.slug: issuer.mint(
                    tenant_id=t.id, subject=sub, audience="edge", scopes=(READ, WRITE, EXPORT)
                )
                for t, sub in ((acme, "alice"), (globex, "gina"))
            }
            stack = Stack(client, owner, acme, globex, "", tokens)
            made = {
                t.slug: client.post("/worklogs", json=ENTRY, headers=stack.headers(t))
                for t in (acme, globex)
            }
            assert all(r.status_code == 201 for r in made.values()), made
            yield Stack(client, owner, acme, globex, made["acme"].json()["id"], tokens)


# -- generated bodies ------------------------------------------------------------------

BAD_CHARACTERS = st.one_of(st.just("\x00"), st.characters(categories=["Cs"]))
TEXT = st.one_of(
    st.text(max_size=40),  # any Unicode
    st.lists(st.one_of(st.characters(), BAD_CHARACTERS), max_size=20).map("".join),
    st.sampled_from(["", " ", "x" * 501, "x" * 2001, "2026-11-22", "\u0000nul", "\ud800"]),
)
NUMBERS = st.one_of(
    st.integers(min_value=1, max_value=1440),
    st.integers(),
    st.sampled_from([0, -1, 1441, 2**63, 10**100, -(10**100), True, False]),
    st.floats(allow_nan=False, allow_infinity=False),
)
VALUES = st.recursive(
    st.one_of(st.none(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
DAYS = st.one_of(st.dates().map(lambda d: d.isoformat()), TEXT, VALUES)
# Close to a valid worklog: each field valid or not, sometimes missing, sometimes extra.
WORKLOGS = st.fixed_dictionaries(
    {},
    optional={
        "description": st.one_of(st.text(min_size=1, max_size=40), TEXT, VALUES),
        "minutes": st.one_of(st.integers(min_value=1, max_value=1440), NUMBERS, VALUES),
        "day": DAYS,
        "comment": st.one_of(st.none(), st.text(max_size=40), TEXT, VALUES),
        "format": st.one_of(st.sampled_from(["json", "csv"]), TEXT, VALUES),
        "tenant_id": st.text(max_size=10),
    },
)
VALID_LOOKING = st.fixed_dictionaries(
    {
        "description": st.one_of(st.text(min_size=1, max_size=40), TEXT),
        "minutes": st.integers(min_value=1, max_value=1440),
        "day": st.dates().map(lambda d: d.isoformat()),
    },
    optional={"comment": st.one_of(st.none(), st.text(max_size=40), TEXT)},
)
DOCUMENTS = st.one_of(WORKLOGS, VALID_LOOKING, VALUES, st.dictionaries(TEXT, VALUES, max_size=5))


@st.composite
def serialized(
    draw: st.DrawFn, documents: st.SearchStrategy[Any] = DOCUMENTS, escaped: bool | None = None
) -> bytes:
    """A document as JSON; unescaped, NUL is a raw control character (invalid JSON) and a
    lone surrogate becomes bytes that are not UTF-8."""
    document = draw(documents)
    ascii_only = draw(st.booleans()) if escaped is None else escaped
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def number_literals(draw: st.DrawFn) -> bytes:
    """Numbers JSON allows but no column holds: 1e400 (inf), 6,000 digits, -0.0, 1e-400."""
    literal = draw(
        st.one_of(
            st.sampled_from(
                ["1e400", "-1e400", "1e-400", "-0", "-0.0", "1E+2", "NaN", "Infinity", "0x10", "01"]
            ),
            st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
        )
    )
    field = draw(st.sampled_from(["minutes", "description", "day", "comment", "format"]))
    return json.dumps({**ENTRY, field: "@"}).replace('"@"', literal).encode()


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(
        st.one_of(
            st.integers(min_value=1, max_value=50), st.integers(min_value=900, max_value=8000)
        )
    )
    inner = (
        "[" * depth + "]" * depth if draw(st.booleans()) else '{"a":' * depth + "1" + "}" * depth
    )
    return (
        json.dumps({**ENTRY, "description": "@"}).replace('"@"', inner).encode()
        if draw(st.booleans())
        else inner.encode()
    )


OVERSIZED = st.sampled_from(
    [
        json.dumps({**ENTRY, "comment": "x" * MAX_BODY_BYTES}).encode(),
        json.dumps({**ENTRY, "comment": "x" * EDGE_MAX_BODY_BYTES}).encode(),
        b" " * (MAX_BODY_BYTES + 1),
    ]
)
BODIES = st.one_of(
    serialized(VALID_LOOKING, escaped=True),  # what a client means to send: often accepted
    serialized(),
    serialized(),
    number_literals(),
    nested(),
    st.one_of(OVERSIZED, st.binary(max_size=64), st.sampled_from([b"", b"{}", b"null", b"[]"])),
)
CONTENT_TYPES = st.one_of(
    st.just("application/json"),
    st.sampled_from(JSON_TYPES),
    st.sampled_from(
        [
            None,
            "text/plain",
            "application/octet-stream",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin-1",
        ]
    ),
)


def is_json_type(content_type: str | None) -> bool:
    return content_type in JSON_TYPES


@pytest.mark.parametrize("route", list(WRITES))
def test_generated_bodies_never_5xx_and_refusals_store_nothing(stack: Stack, route: str) -> None:
    method, path = route.split(" ")
    path = path.replace("{id}", stack.worklog_id)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=BODIES, content_type=CONTENT_TYPES)
    def send(body: bytes, content_type: str | None) -> None:
        before = stack.snapshot()
        response = stack.client.request(
            method, path, content=body, headers=stack.headers(stack.acme, content_type)
        )
        after = stack.snapshot()
        status = response.status_code
        event(f"answered {status}")  # the spread, in --hypothesis-show-statistics
        assert status < 500, (status, response.text)
        if len(body) > MAX_BODY_BYTES:
            expected: set[int] = {413}
        elif body and not is_json_type(content_type):
            expected = {415}
        else:
            expected = {WRITES[route], 422}
        assert status in expected, (status, response.text)
        if status != WRITES[route]:
            assert response.headers["content-type"] == "application/problem+json"
            problem = json.loads(response.content.decode("utf-8"))
            assert problem["status"] == status
            assert "\x00" not in json.dumps(problem, ensure_ascii=False)
            json.dumps(problem, ensure_ascii=False).encode("utf-8")  # no lone surrogate
            assert after == before, "a refused body changed stored data"
            return
        answer = response.json()
        if route == "POST /exports":
            added = sorted(set(after["exports"]) - set(before["exports"]))
            assert added == [(stack.acme.id, answer["id"])]
            assert after["worklogs"] == before["worklogs"]
            return
        if route == "POST /worklogs":
            added = sorted(set(after["worklogs"]) - set(before["worklogs"]))
            assert [(r[0], r[1]) for r in added] == [(stack.acme.id, answer["id"])]
        else:
            changed = set(after["worklogs"]) - set(before["worklogs"])
            assert len(after["worklogs"]) == len(before["worklogs"])
            assert {(r[0], r[1]) for r in changed} <= {(stack.acme.id, stack.worklog_id)}
        assert after["exports"] == before["exports"]
        for field in ("description", "comment"):
            value = answer[field] or ""
            assert "\x00" not in value
            value.encode("utf-8")  # no lone surrogate was stored

    send()


@pytest.mark.parametrize("field", ["description", "comment"])
def test_nul_is_refused_naming_the_field_and_the_next_request_goes_through(
    stack: Stack, field: str
) -> None:
    # The sequence: NUL in description, then NUL in comment, then a valid worklog,
    # back to back on the edge's pooled connection to the backend.
    before = stack.snapshot()
    for name in ("description", "comment", field):
        refused = stack.client.post(
            "/worklogs", json={**ENTRY, name: "\u0000nul"}, headers=stack.headers(stack.acme)
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"] == {name: "must not contain NUL (U+0000)"}
    assert stack.snapshot() == before
    following = stack.client.post("/worklogs", json=ENTRY, headers=stack.headers(stack.acme))
    assert following.status_code == 201, following.text


def test_statuses_from_the_backend_reach_the_client_through_the_edge(stack: Stack) -> None:
    before = stack.snapshot()
    acme = functools.partial(stack.headers, stack.acme)
    too_large = stack.client.post(
        "/worklogs", content=b" " * (MAX_BODY_BYTES + 1), headers=acme("application/json")
    )
    edge_limit = stack.client.post(
        "/worklogs", content=b" " * (EDGE_MAX_BODY_BYTES + 1), headers=acme("application/json")
    )
    not_json = stack.client.post(
        "/worklogs", content=json.dumps(ENTRY).encode(), headers=acme("text/plain")
    )
    no_type = stack.client.post("/worklogs", content=json.dumps(ENTRY).encode(), headers=acme())
    deep = stack.client.post(
        "/worklogs", content=b"[" * 8000 + b"]" * 8000, headers=acme("application/json")
    )
    for response, status, code in (
        (too_large, 413, "payload-too-large"),
        (edge_limit, 413, "payload-too-large"),
        (not_json, 415, "unsupported-media-type"),
        (no_type, 415, "unsupported-media-type"),
        (deep, 422, "invalid-request"),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
    assert stack.snapshot() == before
