"""TenantContext binding: fail closed, no silent tenant switch, immutability."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from tenancy.context import (
    Principal,
    TenantContext,
    bind,
    current,
    current_or_none,
    require_scope,
    run_in_context,
    wrap,
)
from tenancy.errors import InsufficientScope, NoTenantContext, TenantContextConflict


def make(tenant: str, scopes: frozenset[str] = frozenset()) -> TenantContext:
    return TenantContext(
        tenant_id=tenant,
        tenant_slug=tenant,
        region="eu-central-1",
        principal=Principal(issuer="i", tenant_id=tenant, subject="s", scopes=scopes),
        request_id="r",
    )


def test_current_without_a_context_raises() -> None:
    with pytest.raises(NoTenantContext):
        current()
    assert current_or_none() is None


def test_bind_sets_and_always_resets() -> None:
    ctx = make("a")
    with pytest.raises(RuntimeError), bind(ctx):
        assert current() is ctx
        raise RuntimeError("boom")
    assert current_or_none() is None


def test_binding_another_tenant_inside_a_binding_is_refused() -> None:
    with bind(make("a")):
        with pytest.raises(TenantContextConflict):
            run_in_context(make("b"), current)
        with bind(make("a")) as same:  # the same tenant (e.g. a narrower principal) is fine
            assert current() is same
        assert current().tenant_id == "a"


def test_context_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make("a").tenant_id = "b"  # type: ignore[misc]


def test_run_in_context_does_not_leak_into_the_caller() -> None:
    assert run_in_context(make("a"), lambda: current().tenant_id) == "a"
    assert current_or_none() is None


def test_plain_threads_do_not_inherit_but_wrapped_ones_do() -> None:
    seen: dict[str, object] = {}
    with bind(make("a")):
        plain = threading.Thread(target=lambda: seen.setdefault("plain", current_or_none()))
        wrapped = threading.Thread(
            target=wrap(lambda: seen.setdefault("wrapped", current().tenant_id))
        )
        plain.start(), wrapped.start()
        plain.join(), wrapped.join()
    assert seen == {"plain": None, "wrapped": "a"}


def test_require_scope() -> None:
    with bind(make("a", frozenset({"worklogs:read"}))):
        assert require_scope("worklogs:read").tenant_id == "a"
        with pytest.raises(InsufficientScope) as info:
            require_scope("worklogs:write")
    assert info.value.scope == "worklogs:write"
    with pytest.raises(NoTenantContext):
        require_scope("worklogs:read")
