"""De-identification: consent gate, pseudonyms, scrubbing, schema errors, audit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tenancy.clock import FrozenClock
from tenancy.deid import (
    ContributionRefused,
    Deidentifier,
    DeidSchemaError,
    IdentifierKind,
    InvalidSchema,
    MemoryContributionPolicy,
    Person,
    RecordRejected,
    RecordSchema,
    Scrubber,
    SqlContributionPolicy,
    contribution_settings,
)
from tenancy.errors import ConfigurationError, TenancyError
from tenancy.events import MemorySink
from tests.unit.deid import corpus

SECRET = b"s" * 32
SCHEMA = RecordSchema(
    identifiers={
        "author": IdentifierKind.NAME,
        "email": IdentifierKind.EMAIL,
        "account_id": IdentifierKind.ACCOUNT,
    },
    drop=frozenset({"email"}),
    text=frozenset({"description", "comment"}),
    keep=frozenset({"minutes", "day"}),
)
PSEUDONYM = re.compile(r"^p_[0-9a-f]{16}$")


@pytest.fixture
def policy(clock: FrozenClock, events: MemorySink) -> MemoryContributionPolicy:
    return MemoryContributionPolicy(
        {"acme": True, "globex": True, "initech": False}, clock=clock, events=events
    )


@pytest.fixture
def deid(policy: MemoryContributionPolicy, events: MemorySink, clock: FrozenClock) -> Deidentifier:
    return Deidentifier(SECRET, policy=policy, schema=SCHEMA, events=events, clock=clock)


def directory() -> list[Person]:
    return [Person(name, email, account) for name, email, account in corpus.PEOPLE]


def leaks(output: Any) -> list[str]:
    """Every corpus name, e-mail and account id still found in the serialized output."""
    text = json.dumps(output, ensure_ascii=False).casefold()
    found = [e for e in corpus.EMAILS | corpus.ACCOUNTS if e.casefold() in text]
    for name in corpus.NAMES:
        if re.search(rf"(?<!\w){re.escape(name.casefold())}(?!\w)", text):
            found.append(name)
    if "@" in text:
        found.append("@")
    return sorted(found)


# -- the corpus ------------------------------------------------------------------------


def test_no_corpus_name_or_email_survives(deid: Deidentifier) -> None:
    records = corpus.records()
    assert len(records) == 30
    assert leaks(records)  # the scan does find them in the input
    out = deid.deidentify("acme", records, people=directory())
    assert len(out) == 30
    assert leaks(out) == []


def test_no_corpus_name_survives_from_record_fields_alone(deid: Deidentifier) -> None:
    # Without the directory, the batch's own author/email/account fields are the known
    # identifiers: every corpus person authors at least one record.
    out = deid.deidentify("acme", corpus.records())
    assert leaks(out) == []


def test_output_shape(deid: Deidentifier) -> None:
    out = deid.deidentify("acme", corpus.records(), people=directory())
    first = out[0]
    assert set(first) == {"author", "account_id", "description", "comment", "minutes", "day"}
    assert PSEUDONYM.match(first["author"]) and PSEUDONYM.match(first["account_id"])
    assert first["minutes"] == 15 and first["day"] == "2026-11-01"
    assert first["comment"] == "[NAME] asked for changes; cc [EMAIL]"
    assert out[3]["comment"] == "[EMAIL] asked to run it again tomorrow"
    assert "[PHONE]" in out[9]["comment"]
    assert "[HANDLE]" in out[6]["comment"]
    assert "[ID]" in out[20]["comment"]


# -- pseudonyms ------------------------------------------------------------------------


def test_pseudonyms_stable_within_tenant(deid: Deidentifier) -> None:
    out1 = deid.deidentify("acme", corpus.records())
    out2 = deid.deidentify("acme", [{"author": "  ann   LEE ", "account_id": "acc-1001"}])
    ann = [r for r, src in zip(out1, corpus.R, strict=True) if src[0] == 0]
    assert len({r["author"] for r in ann}) == 1
    assert out2[0]["author"] == ann[0]["author"]
    assert out2[0]["account_id"] == ann[0]["account_id"]
    # different people get different pseudonyms
    assert len({r["author"] for r in out1}) == len(corpus.PEOPLE)


def test_pseudonyms_differ_across_tenants(deid: Deidentifier) -> None:
    record = {"author": "Ann Lee", "account_id": "acc-1001"}
    acme = deid.deidentify("acme", [record])[0]
    globex = deid.deidentify("globex", [record])[0]
    assert acme["author"] != globex["author"]
    assert acme["account_id"] != globex["account_id"]


def test_key_callable_per_tenant(policy: MemoryContributionPolicy, events: MemorySink) -> None:
    asked: list[str] = []

    def key_for(tenant_id: str) -> bytes:
        asked.append(tenant_id)
        return tenant_id.encode().ljust(32, b"k")

    deid = Deidentifier(key_for, policy=policy, schema=SCHEMA, events=events)
    a = deid.deidentify("acme", [{"author": "Ann Lee"}])[0]["author"]
    g = deid.deidentify("globex", [{"author": "Ann Lee"}])[0]["author"]
    assert asked == ["acme", "globex"] and a != g
    with pytest.raises(ContributionRefused):
        deid.deidentify("initech", [{"author": "Ann Lee"}])
    assert asked == ["acme", "globex"]  # no key material touched when refused


def test_short_keys_are_configuration_errors(policy: MemoryContributionPolicy) -> None:
    with pytest.raises(ConfigurationError):
        Deidentifier(b"short", policy=policy, schema=SCHEMA)
    deid = Deidentifier(lambda t: b"short", policy=policy, schema=SCHEMA)
    with pytest.raises(ConfigurationError):
        deid.deidentify("acme", [{"author": "Ann Lee"}])


# -- the setting -----------------------------------------------------------------------


def test_setting_off_refuses_and_returns_nothing(deid: Deidentifier, events: MemorySink) -> None:
    consumed: list[int] = []

    def records() -> Iterator[dict[str, Any]]:
        for i, r in enumerate(corpus.records()):
            consumed.append(i)
            yield r

    out: list[dict[str, Any]] | None = None
    with pytest.raises(ContributionRefused) as info:
        out = deid.deidentify("initech", records(), actor="job-7")
    assert out is None and consumed == []
    assert info.value.code == "contribution-refused"
    assert isinstance(info.value, TenancyError)
    event = events.events[-1]
    assert (event.action, event.tenant_id, event.actor, event.reason) == (
        "deid.refused",
        "initech",
        "job-7",
        "contribution-disabled",
    )


def test_unknown_tenant_is_refused(deid: Deidentifier, events: MemorySink) -> None:
    with pytest.raises(ContributionRefused):
        deid.deidentify("umbrella", corpus.records())
    assert events.actions()[-1] == "deid.refused"


def test_policy_failure_is_a_refusal(events: MemorySink) -> None:
    class Broken:
        def allows(self, tenant_id: str) -> bool:
            raise RuntimeError("db down")

    deid = Deidentifier(SECRET, policy=Broken(), schema=SCHEMA, events=events)
    with pytest.raises(ContributionRefused) as info:
        deid.deidentify("acme", corpus.records())
    assert info.value.reason == "policy-unavailable"
    assert events.events[-1].reason == "policy-unavailable"


def test_contributed_event_has_counts(deid: Deidentifier, events: MemorySink) -> None:
    deid.deidentify("acme", corpus.records(), people=directory(), actor="job-1")
    event = events.events[-1]
    assert event.action == "deid.contributed" and event.tenant_id == "acme"
    assert event.details["records"] == "30"
    assert event.details["pseudonymised"] == "60"
    assert event.details["dropped"] == "30"
    assert int(event.details["text_replacements"]) > 60


def test_toggling_the_setting(
    deid: Deidentifier, policy: MemoryContributionPolicy, events: MemorySink, clock: FrozenClock
) -> None:
    record = [{"author": "Ann Lee"}]
    assert len(deid.deidentify("acme", record)) == 1
    policy.set("acme", False, by="admin@acme")
    with pytest.raises(ContributionRefused):
        deid.deidentify("acme", record)
    clock.advance(60)
    policy.set("acme", True, by="admin@acme")
    assert len(deid.deidentify("acme", record)) == 1
    assert events.actions() == [
        "deid.contributed",
        "deid.setting_changed",
        "deid.refused",
        "deid.setting_changed",
        "deid.contributed",
    ]
    setting = policy.setting("acme")
    assert setting is not None and setting.allowed and setting.changed_by == "admin@acme"


def test_sql_policy_toggles_and_fails_closed(
    engine: Engine, clock: FrozenClock, events: MemorySink
) -> None:
    policy = SqlContributionPolicy(engine, clock=clock, events=events)
    policy.create_schema()
    deid = Deidentifier(SECRET, policy=policy, schema=SCHEMA, events=events)
    with pytest.raises(ContributionRefused):
        deid.deidentify("acme", corpus.records())  # no row: unknown => refused
    policy.set("acme", True, by="owner")
    assert leaks(deid.deidentify("acme", corpus.records())) == []
    clock.advance(3600)
    policy.set("acme", False, by="owner2")
    with pytest.raises(ContributionRefused):
        deid.deidentify("acme", corpus.records())
    assert not policy.allows("globex")
    with engine.connect() as conn:
        rows = conn.execute(select(contribution_settings)).all()
    assert len(rows) == 1
    assert (rows[0].tenant_id, rows[0].allowed, rows[0].changed_by) == ("acme", False, "owner2")
    setting = policy.setting("acme")
    assert setting is not None and setting.changed_at.replace(tzinfo=None) == (
        clock.now().replace(tzinfo=None)
    )


# -- schema errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identifiers": {}},
        {"identifiers": {"a": IdentifierKind.NAME}, "text": frozenset({"a"})},
        {"identifiers": {"a": IdentifierKind.NAME}, "keep": frozenset({"a"})},
        {"identifiers": {"a": IdentifierKind.NAME}, "drop": frozenset({"b"})},
        {"identifiers": {"a": "name"}},
        {"identifiers": {"": IdentifierKind.NAME}},
        {"identifiers": {}, "text": "comment"},
    ],
)
def test_invalid_schemas_are_typed(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidSchema) as info:
        RecordSchema(**kwargs)
    assert info.value.code == "deid-invalid-schema"
    assert isinstance(info.value, DeidSchemaError) and isinstance(info.value, TenancyError)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"author": "Ann Lee", "phone": "+44 20 7946 0958"}, "phone"),
        ({"author": ["Ann", "Lee"]}, "author"),
        ({"comment": 42}, "comment"),
        ({"minutes": {"nested": "Ann Lee"}}, "minutes"),
        ({"account_id": True}, "account_id"),
    ],
)
def test_records_not_matching_the_schema_refuse_the_batch(
    deid: Deidentifier, events: MemorySink, record: dict[str, Any], field: str
) -> None:
    batch = [*corpus.records()[:3], record]
    with pytest.raises(RecordRejected) as info:
        deid.deidentify("acme", batch)
    assert info.value.code == "deid-record-rejected"
    assert (info.value.field, info.value.index) == (field, 3)
    assert events.events[-1].action == "deid.refused"
    assert events.events[-1].reason == "deid-record-rejected"


def test_missing_and_null_fields(deid: Deidentifier) -> None:
    out = deid.deidentify("acme", [{"author": None, "comment": None, "minutes": 5}, {}])
    assert out == [{"author": None, "comment": None, "minutes": 5}, {}]


# -- the scrubber on its own -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "write to Ann.Lee@Example.COM today",
        "write to ann(at)example.com today",
        "write to ann [at] example [dot] com today",
        "write to ann at example dot com today",
        "write to ann @ example.com today",
        "write to <mailto:x.y+tag@sub.example.co.uk> today",
        "write to o'brien@example.ie today",
    ],
)
def test_scrubber_emails(text: str) -> None:
    out, count = Scrubber().scrub(text)
    assert out == "write to [EMAIL] today" or out == "write to <mailto:[EMAIL]> today"
    assert count == 1


def test_scrubber_keeps_ordinary_text() -> None:
    text = "We met at Acme. Then 45 minutes on 2026-11-22 about order 1234."
    assert Scrubber(names=["Ann Lee"]).scrub(text) == (text, 0)


def test_scrubber_names_phones_handles() -> None:
    scrubber = Scrubber(names=["Ann Lee", "Mary-Jane O'Neil"], accounts=["acc-1001"])
    out, _ = scrubber.scrub(
        "ann  LEE, Mary Jane and O'Neil's plan; acc-1001; +1 (415) 555-0132; @annlee"
    )
    assert out == "[NAME], [NAME] [NAME] and [NAME]'s plan; [ID]; [PHONE]; [HANDLE]"


def test_scrubber_limit_unknown_names_are_not_found() -> None:
    # Documented limit: no model, so a name nobody supplied survives.
    out, _ = Scrubber(names=["Ann Lee"]).scrub("Ann met Zebulon")
    assert out == "[NAME] met Zebulon"
