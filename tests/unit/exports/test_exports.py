"""Exports: JSON/CSV snapshots of the tenant's rows behind a signed, expiring link."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zlib
from datetime import timedelta
from typing import Any

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from sqlalchemy import Engine, text

from tenancy.clock import FrozenClock
from tenancy.context import bind
from tenancy.errors import ConfigurationError, InvalidRequest, NoTenantContext
from tenancy.events import MemorySink
from tenancy.exports import (
    ExportGone,
    ExportLinkExpired,
    ExportLinkInvalid,
    ExportService,
    ExportTenantMismatch,
)
from tenancy.exports.service import LINK_SALT
from tenancy.keys import TenantKeys
from tenancy.problems import spec_for
from tenancy.tenants import Tenant
from tests.unit.exports.conftest import FIELDS, SIGNING_KEY, Notes, ctx_of, export_service

SECRET = "plaintext-marker: the customer's secret plan"


def serializer(key: bytes = SIGNING_KEY, salt: str = LINK_SALT) -> URLSafeSerializer:
    """The link format, as a third party holding ``key`` would build it."""
    return URLSafeSerializer(
        key,
        salt=salt,
        fallback_signers=[],
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a link, read without verifying it (what anyone can do)."""
    payload = token.rsplit(".", 1)[0]
    if payload.startswith("."):  # itsdangerous compressed it
        return dict(json.loads(zlib.decompress(base64_decode(payload[1:]))))
    return dict(json.loads(base64_decode(payload)))


def with_claims(token: str, **changes: Any) -> str:
    """``token`` with its payload edited and its signature kept."""
    signature = token.rsplit(".", 1)[1]
    edited = json.dumps({**claims_of(token), **changes}, separators=(",", ":"))
    return f"{base64_encode(edited.encode()).decode()}.{signature}"


def add_notes(notes: Notes, tenant: Tenant, *descriptions: str) -> list[str]:
    with bind(ctx_of(tenant)):
        return [notes.add(d, comment=SECRET) for d in descriptions]


def test_json_export_holds_the_tenants_rows_only(
    exports: ExportService, notes: Notes, acme: Tenant, globex: Tenant, events: MemorySink
) -> None:
    mine = add_notes(notes, acme, "design review", "standup")
    add_notes(notes, globex, "globex only")
    with bind(ctx_of(acme)):
        link = exports.create("json")
        got = exports.download(link.token)
    assert (link.rows, link.format, link.tenant_id) == (2, "json", acme.id)
    assert got.media_type == "application/json" and got.filename.endswith(".json")
    document = json.loads(got.content)
    assert document["tenant_id"] == acme.id and document["export_id"] == link.export_id
    assert sorted(item["id"] for item in document["items"]) == sorted(mine)
    assert {item["comment"] for item in document["items"]} == {SECRET}
    created = [e for e in events.events if e.action == "export.created"]
    downloaded = [e for e in events.events if e.action == "export.downloaded"]
    assert len(created) == 1 and created[0].tenant_id == acme.id
    assert created[0].actor == "alice" and created[0].details["rows"] == "2"
    assert len(downloaded) == 1 and downloaded[0].details["export_id"] == link.export_id


def test_csv_export_has_a_header_row_per_row_and_defuses_formulas(
    exports: ExportService, notes: Notes, acme: Tenant
) -> None:
    add_notes(notes, acme, '=HYPERLINK("http://evil.test")', "plain")
    with bind(ctx_of(acme)):
        got = exports.download(exports.create("csv").token)
    assert got.media_type.startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.content.decode("utf-8"))))
    assert rows[0] == list(FIELDS)  # the columns the service is given, in order
    assert len(rows) == 3
    descriptions = sorted(r[2] for r in rows[1:])
    assert descriptions == ['\'=HYPERLINK("http://evil.test")', "plain"]
    assert all(r[1] == "alice" and r[3] == "30" and r[4] == SECRET for r in rows[1:])


def test_content_is_ciphertext_at_rest(
    exports: ExportService, notes: Notes, acme: Tenant, engine: Engine
) -> None:
    add_notes(notes, acme, "x")
    with bind(ctx_of(acme)):
        exports.create("json")
    with engine.connect() as conn:
        raw = bytes(conn.execute(text("SELECT content FROM tenancy_exports")).scalar_one())
    assert b"plaintext-marker" not in raw and b"alice" not in raw


def test_a_link_is_signed_json_naming_export_tenant_and_expiry(
    exports: ExportService, acme: Tenant
) -> None:
    with bind(ctx_of(acme)):
        link = exports.create("json")
    claims = serializer().loads(link.token)  # verifies under the service's key and salt
    assert claims == {
        "v": 1,
        "x": link.export_id,
        "t": acme.id,
        "e": int(link.expires_at.timestamp()),
    }


@pytest.mark.parametrize("tamper", ["mac", "garbage", "empty", "extra-part", "surrogate"])
def test_a_tampered_link_is_refused(
    exports: ExportService, acme: Tenant, events: MemorySink, tamper: str
) -> None:
    with bind(ctx_of(acme)):
        token = exports.create("json").token
    payload, mac = token.rsplit(".", 1)
    token = {
        "mac": f"{payload}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}",  # all-data bits
        "garbage": "not-a-link",
        "empty": "",
        "extra-part": f"{token}.more",
        "surrogate": f"{token}\ud800",
    }[tamper]
    with bind(ctx_of(acme)), pytest.raises(ExportLinkInvalid) as refused:
        exports.download(token)
    assert refused.value.code == "export-link-invalid"
    assert spec_for(refused.value).status == 404
    assert events.actions()[-1] == "export.refused"
    assert events.events[-1].reason == "export-link-invalid"


@pytest.mark.parametrize("claim", ["t", "x", "e", "v"])
def test_a_link_whose_payload_is_edited_is_refused(
    exports: ExportService, acme: Tenant, globex: Tenant, clock: FrozenClock, claim: str
) -> None:
    with bind(ctx_of(globex)):
        theirs = exports.create("json")
    with bind(ctx_of(acme)):
        mine = exports.create("json")
    value = {
        "t": globex.id,
        "x": theirs.export_id,
        "v": 2,  # another tenant, export, format
        "e": int(clock.now().timestamp()) + 365 * 86400,
    }[claim]  # a year more
    forged = with_claims(mine.token, **{claim: value})
    for tenant in (acme, globex):
        with bind(ctx_of(tenant)), pytest.raises(ExportLinkInvalid) as refused:
            exports.download(forged)
        assert spec_for(refused.value).status == 404


def test_a_link_signed_with_another_key_is_refused(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    exports: ExportService,
    acme: Tenant,
) -> None:
    other = export_service(engine, notes, tenant_keys, clock, events, signing_key=b"o" * 32)
    with bind(ctx_of(acme)):
        link = other.create("json")
        forged = serializer(b"o" * 32).dumps(claims_of(link.token))  # same claims, other key
        for token in (link.token, forged):
            with pytest.raises(ExportLinkInvalid) as refused:
                exports.download(token)
            assert spec_for(refused.value).status == 404


def test_the_signing_key_used_for_another_purpose_makes_no_link(
    exports: ExportService, acme: Tenant
) -> None:
    with bind(ctx_of(acme)):
        claims = claims_of(exports.create("json").token)
        for salt in ("itsdangerous", "tenancy.exports.link/v2"):
            with pytest.raises(ExportLinkInvalid):
                exports.download(serializer(salt=salt).dumps(claims))
        assert exports.download(serializer().dumps(claims)).tenant_id == acme.id


def test_a_retired_signing_key_still_verifies_during_rotation(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    exports: ExportService,
    acme: Tenant,
) -> None:
    rotated = export_service(
        engine,
        notes,
        tenant_keys,
        clock,
        events,
        signing_key=b"n" * 32,
        previous_keys=[b"k" * 32],
    )
    with bind(ctx_of(acme)):
        old_token = exports.create("json").token
        assert rotated.download(old_token).tenant_id == acme.id
        new_token = rotated.create("json").token
        with pytest.raises(ExportLinkInvalid):
            exports.download(new_token)


def test_an_expired_link_is_refused(
    exports: ExportService, acme: Tenant, clock: FrozenClock
) -> None:
    with bind(ctx_of(acme)):
        token = exports.create("csv").token
        clock.advance(timedelta(hours=24).total_seconds() - 1)
        assert exports.download(token).format == "csv"  # the last second of the window
        clock.advance(1)
        with pytest.raises(ExportLinkExpired) as refused:
            exports.download(token)
    assert refused.value.code == "export-link-expired"
    assert spec_for(refused.value).status == 410


def test_a_link_keeps_the_expiry_it_was_made_with(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    exports: ExportService,
    acme: Tenant,
) -> None:
    longer = export_service(engine, notes, tenant_keys, clock, events, window=timedelta(days=7))
    with bind(ctx_of(acme)):
        token = exports.create("json").token  # a 24 h link
        clock.advance(timedelta(hours=25).total_seconds())
        with pytest.raises(ExportLinkExpired):
            longer.download(token)  # a longer window for new links extends no old one


def test_another_tenants_link_is_refused(
    exports: ExportService, notes: Notes, acme: Tenant, globex: Tenant, events: MemorySink
) -> None:
    add_notes(notes, acme, "acme secret")
    with bind(ctx_of(acme)):
        token = exports.create("json").token
    with bind(ctx_of(globex, sub="mallory")), pytest.raises(ExportTenantMismatch) as refused:
        exports.download(token)
    assert refused.value.code == "export-tenant-mismatch"
    assert "acme" not in str(refused.value) and acme.id not in str(refused.value)
    assert spec_for(refused.value).status == 404  # answered like a link naming nothing
    assert spec_for(refused.value) == spec_for(ExportLinkInvalid("x"))
    last = events.events[-1]
    assert (last.action, last.tenant_id, last.actor) == ("export.refused", globex.id, "mallory")


def test_a_deleted_export_is_gone(exports: ExportService, acme: Tenant, engine: Engine) -> None:
    with bind(ctx_of(acme)):
        token = exports.create("json").token
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tenancy_exports"))
    with bind(ctx_of(acme)), pytest.raises(ExportGone) as refused:
        exports.download(token)
    assert refused.value.code == "export-gone"
    assert spec_for(refused.value).status == 410


def test_downloading_needs_a_bound_tenant(exports: ExportService, acme: Tenant) -> None:
    with bind(ctx_of(acme)):
        token = exports.create("json").token
    with pytest.raises(NoTenantContext):
        exports.download(token)
    with pytest.raises(NoTenantContext):
        exports.create("json")


def test_an_unknown_format_is_an_invalid_request(exports: ExportService, acme: Tenant) -> None:
    with bind(ctx_of(acme)), pytest.raises(InvalidRequest) as refused:
        exports.create("xlsx")
    assert "format" in refused.value.errors


@pytest.mark.parametrize(
    ("key", "window"),
    [(b"short", timedelta(hours=1)), (b"k" * 32, timedelta(0))],
    ids=["short-key", "empty-window"],
)
def test_weak_settings_are_refused(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    key: bytes,
    window: timedelta,
) -> None:
    with pytest.raises(ConfigurationError):
        export_service(engine, notes, tenant_keys, clock, events, signing_key=key, window=window)


@pytest.mark.parametrize("fields", [(), "id,author"], ids=["none", "a-string"])
def test_an_export_without_its_fields_is_refused(
    engine: Engine,
    notes: Notes,
    tenant_keys: TenantKeys,
    clock: FrozenClock,
    events: MemorySink,
    fields: object,
) -> None:
    # The library names no application's fields: every service says what it exports.
    import tenancy.exports

    assert not hasattr(tenancy.exports, "WORKLOG_FIELDS")
    with pytest.raises(ConfigurationError):
        export_service(engine, notes, tenant_keys, clock, events, fields=fields)
