"""Bad bodies at the worklogs boundary (SQLite here; the same cases run on PostgreSQL in
``tests/integration/test_worklogs_fuzz_postgres.py``): every one is a problem+json
refusal naming what is wrong, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenancy.problems import exception_handlers
from tenancy.tenants import Tenant
from tenancy_examples.worklogs.payload import MAX_BODY_BYTES, parse_json_object, read_body
from tests.conftest import TokenFactory, bearer

pytestmark = pytest.mark.anyio
ENTRY = {"description": "design review", "minutes": 45, "day": "2026-11-22"}
JSON = {"content-type": "application/json"}


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT tenant_id, id, description, minutes, day, comment FROM worklogs "
                    "ORDER BY id"
                )
            )
        ]


async def post(
    client: httpx.AsyncClient,
    token: str,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    path: str = "/worklogs",
    method: str = "POST",
) -> httpx.Response:
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return await client.request(
        method,
        path,
        content=content,
        headers={**bearer(token), **(JSON if headers is None else headers)},
    )


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content.decode("utf-8"))  # strict UTF-8
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.mark.parametrize("field", ["description", "comment"])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("\u0000nul", "must not contain NUL (U+0000)"),
        ("before\u0000after", "must not contain NUL (U+0000)"),
        ("\ud800lone", "must not contain unpaired surrogates (U+D800-U+DFFF)"),
        ("lone\udfff", "must not contain unpaired surrogates (U+D800-U+DFFF)"),
    ],
)
async def test_text_postgresql_cannot_store_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    engine: Engine,
    acme: Tenant,
    token_for: TokenFactory,
    field: str,
    value: str,
    says: str,
) -> None:
    # json.dumps escapes both (\u0000, \ud800): exactly what a client sends.
    response = await post(client, token_for(acme), json.dumps({**ENTRY, field: value}))
    assert problem(response, 422, "invalid-request")["errors"] == {field: says}
    assert stored(engine) == []


async def test_surrogate_pair_is_one_character_and_accepted(
    client: httpx.AsyncClient, acme: Tenant, token_for: TokenFactory
) -> None:
    response = await post(
        client, token_for(acme), json.dumps({**ENTRY, "description": "done \ud83d\ude00"})
    )
    assert response.status_code == 201 and response.json()["description"] == "done \U0001f600"


async def test_patch_with_nul_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, engine: Engine, acme: Tenant, token_for: TokenFactory
) -> None:
    created = await post(client, token_for(acme), json.dumps(ENTRY))
    before = stored(engine)
    for field in ("description", "comment"):
        response = await post(
            client,
            token_for(acme),
            json.dumps({field: "x\u0000"}),
            path=f"/worklogs/{created.json()['id']}",
            method="PATCH",
        )
        assert problem(response, 422, "invalid-request")["errors"] == {
            field: "must not contain NUL (U+0000)"
        }
    assert stored(engine) == before


async def test_unknown_field_names_are_echoed_escaped_never_raw(
    client: httpx.AsyncClient, engine: Engine, acme: Tenant, token_for: TokenFactory
) -> None:
    raw = '{"a\\u0000b": 1, "\\udc00": 2, "tenant_id\\u0000": 3, "ok": 4}'
    response = await post(
        client,
        token_for(acme),
        raw[:-1] + ', "description": "d", "minutes": 5, "day": "2026-11-22"}',
    )
    errors = problem(response, 422, "invalid-request")["errors"]
    assert errors == {
        "a\\u0000b": "unknown field",
        "\\udc00": "unknown field",
        "tenant_id\\u0000": "unknown field",
        "ok": "unknown field",
    }
    # Escaped as visible text: the answer decodes to no NUL and no lone surrogate.
    assert all("\x00" not in k and k.encode("utf-8") for k in errors)
    assert stored(engine) == []


async def test_body_over_the_limit_is_413_before_it_is_read(
    client: httpx.AsyncClient, engine: Engine, acme: Tenant, token_for: TokenFactory
) -> None:
    body = json.dumps({**ENTRY, "description": "x" * MAX_BODY_BYTES})
    response = await post(client, token_for(acme), body)
    assert problem(response, 413, "payload-too-large")["detail"] == (
        f"request body is larger than {MAX_BODY_BYTES} bytes"
    )
    assert stored(engine) == []


async def test_chunked_body_over_the_limit_is_413_and_read_no_further(
    client: httpx.AsyncClient, engine: Engine, acme: Tenant, token_for: TokenFactory
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal pulled
        yield b'{"description": "'
        while True:
            pulled += 1
            yield b"x" * 1024

    response = await client.post(
        "/worklogs", content=endless(), headers={**bearer(token_for(acme)), **JSON}
    )
    problem(response, 413, "payload-too-large")
    assert pulled <= MAX_BODY_BYTES // 1024 + 1
    assert stored(engine) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonp",
        "json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        None,
    ],
)
async def test_body_not_declared_as_json_is_415(
    client: httpx.AsyncClient,
    engine: Engine,
    acme: Tenant,
    token_for: TokenFactory,
    content_type: str | None,
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await post(client, token_for(acme), json.dumps(ENTRY), headers=headers)
    problem(response, 415, "unsupported-media-type")
    assert stored(engine) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
        "application/merge-patch+json",
    ],
)
async def test_json_media_types_are_accepted(
    client: httpx.AsyncClient, acme: Tenant, token_for: TokenFactory, content_type: str
) -> None:
    response = await post(
        client, token_for(acme), json.dumps(ENTRY), headers={"content-type": content_type}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[" * 5000 + b"]" * 5000, "request body is nested too deeply"),
        (
            b'{"description": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "request body is nested too deeply",
        ),
        (b"{" + b'"a":{' * 2000 + b"}" * 2001, "request body is nested too deeply"),
        (b'{"minutes": NaN}', "request body is not valid JSON"),
        (b'{"minutes": -Infinity}', "request body is not valid JSON"),
        (b'{"minutes": ' + b"9" * 5000 + b"}", "request body is not valid JSON"),  # digit limit
        (b"", "request body is not valid JSON"),
        (b"{not json", "request body is not valid JSON"),
        (b'{"description": "\xff"}', "request body is not valid JSON"),  # not UTF-8
        ('{"description": "d"}'.encode("utf-16"), "request body is not valid JSON"),
        (b'\xef\xbb\xbf{"description": "d"}', "request body is not valid JSON"),  # UTF-8 BOM
        (b"[]", "request body must be a JSON object"),
        (b'"text"', "request body must be a JSON object"),
        (b"null", "request body must be a JSON object"),
        (b"1e400", "request body must be a JSON object"),
    ],
)
async def test_unparseable_or_deep_body_is_422_not_500(
    client: httpx.AsyncClient,
    engine: Engine,
    acme: Tenant,
    token_for: TokenFactory,
    body: bytes,
    detail: str,
) -> None:
    response = await post(client, token_for(acme), body)
    assert problem(response, 422, "invalid-request")["detail"] == detail
    assert stored(engine) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("minutes", 1e400),
        ("minutes", 10**100),
        ("minutes", -(10**100)),
        ("minutes", 30.0),
        ("minutes", True),
        ("minutes", "30"),
        ("minutes", None),
        ("description", 5),
        ("description", ["a"]),
        ("description", {"a": "b"}),
        ("description", ""),
        ("description", "x" * 501),
        ("day", 20261122),
        ("day", "2026-13-01"),
        ("day", "2026-11-22\u0000"),
        ("comment", 7),
        ("comment", "x" * 2001),
    ],
)
async def test_wrong_type_or_range_is_422_naming_the_field(
    client: httpx.AsyncClient,
    engine: Engine,
    acme: Tenant,
    token_for: TokenFactory,
    field: str,
    value: Any,
) -> None:
    # 1e400 is sent as the literal 1e400 (it parses to inf), not as the token Infinity.
    raw = json.dumps({**ENTRY, field: "@"}).replace(
        '"@"', "1e400" if value == 1e400 else json.dumps(value)
    )
    response = await post(client, token_for(acme), raw)
    assert list(problem(response, 422, "invalid-request")["errors"]) == [field]
    assert stored(engine) == []


def body_echo() -> Starlette:
    """``read_body`` and ``parse_json_object`` alone, as ``POST /exports`` uses them."""

    async def echo(request: Request) -> Response:
        raw = await read_body(request)
        return JSONResponse({"body": parse_json_object(raw) if raw.strip() else None})

    return Starlette(
        routes=[Route("/", echo, methods=["POST"])], exception_handlers=exception_handlers()
    )


@pytest.mark.parametrize(
    "headers", [{}, {"content-type": "application/octet-stream"}, {"content-type": "text/plain"}]
)
async def test_empty_body_needs_no_json_content_type(headers: dict[str, str]) -> None:
    # aiohttp (the edge's client) labels an empty body application/octet-stream.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=body_echo()), base_url="http://t"
    ) as echo:
        response = await echo.post("/", headers=headers)
    assert response.status_code == 200 and response.json() == {"body": None}


def test_parse_refuses_more_than_the_limit_even_when_called_alone() -> None:
    from tenancy.errors import PayloadTooLarge

    with pytest.raises(PayloadTooLarge):
        parse_json_object(b" " * (MAX_BODY_BYTES + 1))
