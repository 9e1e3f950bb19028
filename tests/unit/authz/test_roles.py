"""Role bindings in the database: a change by any process decides the next decision of
every authorizer sharing the signal, cached decisions included; unbinding takes roles
away (never back to the token's); a reload that fails refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.exc import OperationalError

from tenancy.authz import (
    Action,
    Authorizer,
    Decision,
    EmbeddedRego,
    PolicyBundle,
    RoleBindings,
    RoleBindingsRefresher,
    default_policy_dir,
)
from tenancy.authz.policytests import fixture_bundle
from tenancy.authz.roles import role_bindings_table
from tenancy.cli import main
from tenancy.clock import SYSTEM_CLOCK
from tenancy.context import Principal, TenantContext
from tenancy.deployment import authorizer_for, open_engine, open_registry, open_role_bindings
from tenancy.errors import ConfigurationError, DecisionUnavailable, InvalidRequest, NotFound
from tenancy.events import MemorySink
from tenancy.identity import DEV_ISSUER
from tenancy.keys.state import SharedKeyState
from tenancy.settings import Settings

pytestmark = pytest.mark.anyio
APP_DATA = default_policy_dir() / "cases" / "app.json"
TENANT = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
DELETE = Action.http("DELETE", "/worklogs/{id}")  # needs worklogs:write: member or admin
ROOT = Path(__file__).resolve().parents[3]


def context(
    *, tenant: str = TENANT, subject: str = "alice", roles: frozenset[str] = frozenset({"member"})
) -> TenantContext:
    principal = Principal(
        issuer=DEV_ISSUER,
        tenant_id=tenant,
        subject=subject,
        roles=roles,
        scopes=frozenset({"worklogs:read", "worklogs:write"}),
    )
    return TenantContext(tenant, "acme", "eu-central-1", principal, "rid")


class Counting:
    """The embedded engine, counting how often it is really asked."""

    name = "counting"

    def __init__(self, bundle: PolicyBundle) -> None:
        self.inner = EmbeddedRego(bundle)
        self.calls = 0

    @property
    def revision(self) -> int:
        return self.inner.revision

    def decide(self, input: Mapping[str, Any]) -> Decision:
        self.calls += 1
        return self.inner.decide(input)


class Flaky(RoleBindings):
    """A store whose reads fail (``down``) or hang (``hang``) on demand."""

    down = False
    hang: threading.Event | None = None

    def of_tenant(self, tenant_id: str) -> dict[str, list[str]]:
        if self.hang is not None:
            self.hang.wait(5)
        if self.down:
            raise OperationalError("SELECT", {}, Exception("database is down"))
        return super().of_tenant(tenant_id)


def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TENANCY_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(settings(tmp_path))
    yield engine
    engine.dispose()


def store_on(
    engine: Engine, tmp_path: Path, cls: type[RoleBindings] = RoleBindings, **kwargs: Any
) -> RoleBindings:
    """A store on the test's database and the host's shared generation file, as each
    process opens its own."""
    store = cls(engine, signal=SharedKeyState(tmp_path / "data" / "policy-state"), **kwargs)
    store.create_schema()
    return store


@pytest.fixture
def store(db: Engine, tmp_path: Path, events: MemorySink) -> Iterator[RoleBindings]:
    opened = store_on(db, tmp_path, events=events)
    yield opened
    opened.close()


def authorizer_over(store: RoleBindings) -> tuple[Authorizer, Counting, PolicyBundle]:
    bundle = fixture_bundle()
    engine = Counting(bundle)
    refresher = RoleBindingsRefresher(store, bundle)
    return Authorizer(engine, service="worklogs", role_bindings=refresher), engine, bundle


# -- what a change does to the next decision -------------------------------------------


async def test_a_binding_decides_the_next_decision_even_over_a_cached_deny(
    store: RoleBindings,
) -> None:
    authorizer, engine, _ = authorizer_over(store)
    viewer = context(roles=frozenset({"viewer"}))  # the token alone: no worklogs:write
    assert not (await authorizer.decide(viewer, DELETE)).allow
    assert not (await authorizer.decide(viewer, DELETE)).allow
    assert engine.calls == 1  # the deny is cached
    assert store.bind(TENANT, "alice", ["member"], actor="ann") == ["member"]
    assert (await authorizer.decide(viewer, DELETE)).allow
    assert engine.calls == 2
    # Another tenant is untouched: its roles still come from tokens.
    assert not (
        await authorizer.decide(context(tenant=OTHER, roles=viewer.principal.roles), DELETE)
    ).allow


async def test_unbinding_takes_the_roles_away_and_never_gives_the_tokens_back(
    store: RoleBindings,
) -> None:
    authorizer, _, bundle = authorizer_over(store)
    member = context()  # the token says member: allowed while the tenant binds nothing
    assert (await authorizer.decide(member, DELETE)).allow
    store.bind(TENANT, "alice", ["viewer"], actor="ann")  # a binding below the token
    assert not (await authorizer.decide(member, DELETE)).allow
    store.bind(TENANT, "alice", ["admin"], actor="ann")
    assert (await authorizer.decide(member, DELETE)).allow
    # The tenant's last binding goes: alice keeps a row without roles, and the policy's
    # entry says so; her token's "member" does not come back.
    assert store.unbind(TENANT, "alice", actor="ann") == ["admin"]
    assert store.of_tenant(TENANT) == {"alice": []}
    refused = await authorizer.decide(member, DELETE)
    assert not refused.allow and refused.reasons == ("scope_not_granted",)
    assert bundle.get(("tenancy", "role_bindings", TENANT)) == {"alice": []}
    # bob, never bound, has no roles either while the tenant manages them.
    assert not (await authorizer.decide(context(subject="bob"), DELETE)).allow
    # Releasing the tenant is the deliberate way back to the tokens' roles.
    assert store.release(TENANT, actor="ann") == 1
    assert store.of_tenant(TENANT) == {}
    assert (await authorizer.decide(member, DELETE)).allow
    assert bundle.get(("tenancy", "role_bindings", TENANT)) is None


async def test_a_change_by_another_store_is_seen_on_the_next_decision_not_the_cached_allow(
    store: RoleBindings, tmp_path: Path
) -> None:
    """The second store stands for another process: its own engine on the same SQLite
    file, its own mapping of the same generation file."""
    authorizer, engine, _ = authorizer_over(store)
    store.bind(TENANT, "alice", ["member"], actor="ann")
    member = context()
    first = await authorizer.decide(member, DELETE)
    assert first.allow
    assert (await authorizer.decide(member, DELETE)).decision_id == first.decision_id
    assert engine.calls == 1  # the allow is cached
    other_engine = open_engine(settings(tmp_path))
    other = store_on(other_engine, tmp_path)
    try:
        other.unbind(TENANT, "alice", actor="ann")
        assert authorizer.cached(member, DELETE, now=SYSTEM_CLOCK.timestamp()) is None
        after = await authorizer.decide(member, DELETE)
        assert not after.allow
        assert engine.calls == 2  # decided again, on the new bindings
        other.bind(TENANT, "alice", ["member"], actor="ann")
        assert (await authorizer.decide(member, DELETE)).allow
    finally:
        other.close()
        other_engine.dispose()


async def test_the_cli_in_another_process_unbinds_while_this_one_holds_a_cached_allow(
    tmp_path: Path,
) -> None:
    """Two real processes: this one's authorizer (built by ``authorizer_for``, as the
    services build theirs) and ``tenancy authz roles`` run as its own process."""
    config = settings(tmp_path)
    tenant = open_registry(config).provision("acme", region="eu-central-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANCY_")}
    env["TENANCY_DATA_DIR"] = str(config.data_dir)

    def tenancy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tenancy.cli", "authz", "roles", *args, "--tenant", "acme"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bound = tenancy("bind", "--subject", "alice", "--roles", "member")
    assert bound.returncode == 0, bound.stderr
    assert bound.stdout == "acme\talice\tmember\n"
    authorizer = authorizer_for(config, "worklogs", policy_data=[APP_DATA])
    try:
        viewer = context(tenant=tenant.id, roles=frozenset({"viewer"}))
        first = await authorizer.decide(viewer, DELETE)
        assert first.allow  # from the binding, not the token
        assert (await authorizer.decide(viewer, DELETE)).decision_id == first.decision_id
        unbound = tenancy("unbind", "--subject", "alice", "--as", "ann")
        assert unbound.returncode == 0, unbound.stderr
        assert unbound.stdout == "acme\talice\tno roles\n"
        refused = await authorizer.decide(viewer, DELETE)
        assert not refused.allow
        listed = tenancy("list")
        assert listed.stdout == "acme\troles from bindings\nalice\tno roles\n"
    finally:
        authorizer.close()


# -- failing closed ----------------------------------------------------------------------


async def test_a_reload_that_fails_refuses_and_serves_no_cached_allow(
    db: Engine, tmp_path: Path
) -> None:
    flaky = store_on(db, tmp_path, Flaky)
    assert isinstance(flaky, Flaky)
    authorizer, _, _ = authorizer_over(flaky)
    flaky.bind(TENANT, "alice", ["member"], actor="ann")
    member = context()
    assert (await authorizer.decide(member, DELETE)).allow  # cached
    flaky.down = True
    flaky.signal.changed(TENANT)  # some process changed the tenant's bindings
    with pytest.raises(DecisionUnavailable, match="role bindings could not be read"):
        await authorizer.decide(member, DELETE)
    assert authorizer.cached(member, DELETE, now=SYSTEM_CLOCK.timestamp()) is None
    with pytest.raises(DecisionUnavailable):  # still refused: never current meanwhile
        await authorizer.authorize(member, DELETE)
    flaky.down = False
    assert (await authorizer.decide(member, DELETE)).allow
    flaky.close()


async def test_a_reload_that_hangs_is_unavailable_within_the_deadline(
    db: Engine, tmp_path: Path
) -> None:
    flaky = store_on(db, tmp_path, Flaky)
    assert isinstance(flaky, Flaky)
    bundle = fixture_bundle()
    authorizer = Authorizer(
        EmbeddedRego(bundle),
        service="worklogs",
        bundle=bundle,
        timeout=0.2,
        role_bindings=RoleBindingsRefresher(flaky, bundle),
    )
    flaky.hang = threading.Event()
    try:
        with pytest.raises(DecisionUnavailable, match="not loaded within"):
            await authorizer.decide(context(), DELETE)
    finally:
        flaky.hang.set()
    flaky.close()


async def test_a_malformed_row_fails_closed(store: RoleBindings, db: Engine) -> None:
    authorizer, _, _ = authorizer_over(store)
    with db.begin() as conn:
        conn.execute(
            insert(role_bindings_table).values(
                tenant_id=TENANT,
                subject="alice",
                roles='"admin"',
                updated_at=SYSTEM_CLOCK.now(),
                updated_by="sql",
            )
        )
    with pytest.raises(DecisionUnavailable, match="could not be read: ValueError"):
        await authorizer.decide(context(), DELETE)
    store.bind(TENANT, "alice", ["admin"], actor="ann")  # a binding replaces the bad row
    assert (await authorizer.decide(context(), DELETE)).allow


def test_the_refresher_must_apply_to_the_authorizers_bundle(store: RoleBindings) -> None:
    bundle = fixture_bundle()
    with pytest.raises(ConfigurationError, match="bundle"):
        Authorizer(
            EmbeddedRego(bundle),
            service="worklogs",
            bundle=bundle,
            role_bindings=RoleBindingsRefresher(store, fixture_bundle()),
        )


# -- what is applied, and when ---------------------------------------------------------


async def test_nothing_is_applied_while_nothing_changed(store: RoleBindings) -> None:
    """A tenant without bindings costs no revision (no engine reload, no emptied cache),
    and the bundle's own bindings for a tenant stay while the store has none."""
    bundle = fixture_bundle()
    bundle.set(("tenancy", "role_bindings", OTHER), {"alice": ["admin"]})
    refresher = RoleBindingsRefresher(store, bundle)
    authorizer = Authorizer(EmbeddedRego(bundle), service="worklogs", role_bindings=refresher)
    revision = bundle.revision
    for _ in range(3):
        assert (await authorizer.decide(context(), DELETE)).allow
        viewer = context(tenant=OTHER, roles=frozenset({"viewer"}))
        assert (await authorizer.decide(viewer, DELETE)).allow  # the bundle's binding
    assert bundle.revision == revision
    assert refresher.current(TENANT) and refresher.current(OTHER)
    store.bind(OTHER, "alice", ["viewer"], actor="ann")  # stored rows replace it
    assert not refresher.current(OTHER) and refresher.current(TENANT)
    assert not (await authorizer.decide(viewer, DELETE)).allow
    assert bundle.revision == revision + 1
    store.release(OTHER, actor="ann")
    assert (await authorizer.decide(viewer, DELETE)).allow  # the bundle's own again


def test_concurrent_reloads_end_on_what_the_store_holds(store: RoleBindings) -> None:
    bundle = fixture_bundle()
    refresher = RoleBindingsRefresher(store, bundle)
    stop = threading.Event()
    failures: list[BaseException] = []

    def reload() -> None:
        while not stop.is_set():
            try:
                if not refresher.current(TENANT):
                    refresher.refresh(TENANT)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)
                return

    threads = [threading.Thread(target=reload) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for n in range(30):
            store.bind(TENANT, "alice", [f"role{n}"], actor="ann")
            if n % 3 == 0:
                store.unbind(TENANT, "alice", actor="ann")
            refresher.refresh(TENANT)  # what a decision does when the tenant is stale
            assert bundle.get(("tenancy", "role_bindings", TENANT)) == store.of_tenant(TENANT)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert failures == []
    assert refresher.current(TENANT)
    assert bundle.get(("tenancy", "role_bindings", TENANT)) == {"alice": ["role29"]}


# -- the store's rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "subject", "roles", "actor", "field"),
    [
        ("", "alice", ["admin"], "ann", "tenant_id"),
        (" " + TENANT, "alice", ["admin"], "ann", "tenant_id"),
        (TENANT, "", ["admin"], "ann", "subject"),
        (TENANT, " alice", ["admin"], "ann", "subject"),
        (TENANT, "al\nice", ["admin"], "ann", "subject"),
        (TENANT, "a" * 256, ["admin"], "ann", "subject"),
        (TENANT, 7, ["admin"], "ann", "subject"),
        (TENANT, "alice", "admin", "ann", "roles"),
        (TENANT, "alice", [], "ann", "roles"),
        (TENANT, "alice", [""], "ann", "roles"),
        (TENANT, "alice", ["admin", " viewer"], "ann", "roles"),
        (TENANT, "alice", ["admin,viewer"], "ann", "roles"),
        (TENANT, "alice", [1], "ann", "roles"),
        (TENANT, "alice", ["r" * 65], "ann", "roles"),
        (TENANT, "alice", [f"r{n}" for n in range(65)], "ann", "roles"),
        (TENANT, "alice", ["admin"], "", "actor"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    store: RoleBindings, tenant: Any, subject: Any, roles: Any, actor: Any, field: str
) -> None:
    generation = store.signal.generation(TENANT)
    with pytest.raises(InvalidRequest) as refused:
        store.bind(tenant, subject, roles, actor=actor)
    assert set(refused.value.errors) == {field}
    assert isinstance(refused.value, ValueError)  # the CLI's one line and exit 1
    assert store.of_tenant(TENANT) == {}
    assert store.signal.generation(TENANT) == generation


def test_unbinding_where_roles_come_from_tokens_is_refused(store: RoleBindings) -> None:
    """It could only be done by taking every principal's token roles away: refused."""
    generation = store.signal.generation(TENANT)
    with pytest.raises(NotFound, match="come from their tokens"):
        store.unbind(TENANT, "alice", actor="ann")
    assert store.of_tenant(TENANT) == {}
    assert store.signal.generation(TENANT) == generation


def test_each_change_is_an_event_then_a_signal(store: RoleBindings, events: MemorySink) -> None:
    generation = store.signal.generation(TENANT)
    assert store.bind(TENANT, "alice", ["viewer", "admin", "viewer"], actor="ann") == [
        "admin",
        "viewer",
    ]
    store.unbind(TENANT, "alice", actor="bob")
    store.release(TENANT, actor="carol")
    assert store.signal.generation(TENANT) == generation + 3
    bound, unbound, released = events.events
    assert (bound.action, bound.actor, bound.tenant_id) == ("roles.bound", "ann", TENANT)
    assert bound.details == {"subject": "alice", "roles": "admin,viewer"}  # nothing before
    assert (unbound.action, unbound.actor) == ("roles.unbound", "bob")
    assert unbound.details == {"subject": "alice", "roles": "", "previous": "admin,viewer"}
    assert (released.action, released.actor, released.details) == ("roles.released", "carol", {})


def test_the_cli_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["tenants", "create", "acme", "--region", "eu-central-1", "--data-dir", data]) == 0
    capsys.readouterr()
    for args in (
        ["bind", "--tenant", "acme", "--subject", "alice", "--roles", "admin,,viewer"],
        ["bind", "--tenant", "nobody", "--subject", "alice", "--roles", "admin"],
        ["unbind", "--tenant", "acme", "--subject", "alice"],
    ):
        assert main(["authz", "roles", *args, "--data-dir", data]) == 1
        err = capsys.readouterr().err
        assert err.startswith("tenancy: error: ") and err.count("\n") == 1, err
    assert main(["authz", "roles", "list", "--tenant", "acme", "--data-dir", data]) == 0
    assert capsys.readouterr().out == "acme\troles from tokens\n"
    bind = ["bind", "--tenant", "acme", "--subject", "alice", "--roles", "viewer, admin"]
    assert main(["authz", "roles", *bind, "--data-dir", data]) == 0
    assert capsys.readouterr().out == "acme\talice\tadmin,viewer\n"
    release = ["release", "--tenant", "acme", "--as", "ann", "--data-dir", data]
    assert main(["authz", "roles", *release]) == 0
    assert capsys.readouterr().out == "acme\treleased 1 bindings: roles come from tokens\n"
    store = open_role_bindings(Settings.from_env({"TENANCY_DATA_DIR": data}))
    try:
        tenant_id = (
            open_registry(Settings.from_env({"TENANCY_DATA_DIR": data})).get_by_slug("acme").id
        )
        assert store.of_tenant(tenant_id) == {}
    finally:
        store.close()
