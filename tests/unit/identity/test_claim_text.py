"""Claims that become a principal carry no control characters and no lone surrogates.

A signed token can carry ``"member\\u0000x"``: rego-cpp reads it as ``member``, OPA does
not, and logs and headers should never see it. The verifier refuses such a token before
it becomes a principal, whichever claim carries it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tenancy.errors import InvalidToken
from tenancy.identity import DevIssuer, TokenVerifier
from tenancy.identity.claims import refuse_control_characters
from tests.unit.identity.conftest import AUD

TID = str(uuid.uuid4())
# NUL, other C0 controls, DEL, a C1 control, and lone surrogates (high and low).
BAD = ["\x00", "\x01", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udfff"]


def mint(
    dev: DevIssuer,
    *,
    subject: str = "alice",
    roles: list[str] | None = None,
    scopes: list[str] | None = None,
    **extra: Any,
) -> str:
    return dev.mint(
        tenant_id=TID,
        subject=subject,
        audience=AUD,
        roles=roles or ["member"],
        scopes=scopes or ["worklogs:read"],
        extra_claims=extra or None,
    )


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    return info.value.reason


@pytest.mark.parametrize("bad", BAD, ids=ascii)
def test_subject_with_a_control_character_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, bad: str
) -> None:
    assert "sub claim" in refused(verifier, mint(dev, subject=f"alice{bad}x"))


@pytest.mark.parametrize("bad", BAD, ids=ascii)
def test_role_with_a_control_character_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, bad: str
) -> None:
    # The example: to rego-cpp "member\0x" is "member".
    token = mint(dev, roles=["viewer", f"member{bad}x"])
    assert "roles claim" in refused(verifier, token)


@pytest.mark.parametrize("bad", BAD, ids=ascii)
def test_scope_with_a_control_character_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, bad: str
) -> None:
    token = mint(dev, scopes=["worklogs:read", f"worklogs:write{bad}x"])
    assert "scope claim" in refused(verifier, token)


def test_scope_list_joined_by_a_tab_is_refused(verifier: TokenVerifier, dev: DevIssuer) -> None:
    # scope is space-delimited (RFC 8693); str.split() would also split at a tab.
    token = mint(dev, scope="worklogs:read\tworklogs:write")
    assert "scope claim" in refused(verifier, token)


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=ascii)
def test_tenant_claim_with_a_control_character_is_refused(
    verifier: TokenVerifier, dev: DevIssuer, bad: str
) -> None:
    # Already refused as a non-canonical UUID; kept so a looser tid check cannot let it in.
    assert "tid" in refused(verifier, mint(dev, tid=TID + bad))


def test_unicode_that_is_not_a_control_character_is_accepted(
    verifier: TokenVerifier, dev: DevIssuer
) -> None:
    token = mint(dev, subject="zoë ☃ \U0001d518", roles=["mëmber"], scopes=["worklogs:read"])
    principal = verifier.verify(token).principal
    assert (principal.subject, principal.roles) == ("zoë ☃ \U0001d518", frozenset({"mëmber"}))


@pytest.mark.parametrize("bad", BAD, ids=ascii)
def test_refuse_control_characters_names_the_claim_not_the_value(bad: str) -> None:
    with pytest.raises(InvalidToken) as info:
        refuse_control_characters(f"a{bad}b", claim="sub")
    assert info.value.reason == "sub claim holds a control character or lone surrogate"
    assert refuse_control_characters("a b", claim="sub") == "a b"
