"""`tenancy db audit`: passes on the shipped set-up, fails on each misconfiguration."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tenancy.cli import main
from tenancy.scoping.audit import audit

pytestmark = pytest.mark.postgres


def findings_for(app: Engine) -> list[tuple[str, str]]:
    with app.connect() as conn:
        return [(f.check, f.subject) for f in audit(conn)]


def test_shipped_setup_passes(
    engines: tuple[Engine, Engine], capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = engines
    assert findings_for(app) == []
    url = app.url.render_as_string(hide_password=False)
    assert main(["db", "audit", "--url", url]) == 0
    assert capsys.readouterr().out.startswith("OK:")


MISCONFIGURATIONS = [
    ("ALTER TABLE projects NO FORCE ROW LEVEL SECURITY", ("rls-forced", "public.projects")),
    ("ALTER TABLE projects DISABLE ROW LEVEL SECURITY", ("rls-enabled", "public.projects")),
    (
        "CREATE POLICY open_door ON projects USING (true)",
        ("rls-policy-always-true", "public.projects"),
    ),
    (
        "CREATE POLICY loose ON projects USING (tenant_id IS NOT NULL)",
        ("rls-policy-setting", "public.projects"),
    ),
    (
        "CREATE TABLE notes (tenant_id varchar(36) NOT NULL, body text)",
        ("rls-enabled", "public.notes"),
    ),
    ("ALTER ROLE {role} BYPASSRLS", ("app-role", "{role}")),
    ("ALTER TABLE tasks OWNER TO {role}", ("app-role-owns-table", "public.tasks")),
    ("GRANT TRUNCATE ON projects TO {role}", ("app-role-privilege", "public.projects")),
    ("CREATE VIEW leaky AS SELECT * FROM projects", ("view-not-security-invoker", "public.leaky")),
    (
        "CREATE FUNCTION all_projects() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
        "AS 'SELECT count(*) FROM projects'",
        ("security-definer", "public.all_projects"),
    ),
]


@pytest.mark.parametrize(
    ("ddl", "expected"),
    MISCONFIGURATIONS,
    ids=[m[1][0] + ":" + m[0][:24] for m in MISCONFIGURATIONS],
)
def test_each_misconfiguration_is_found(
    engines: tuple[Engine, Engine],
    ddl: str,
    expected: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner, app = engines
    role = str(app.url.username)
    with owner.begin() as conn:
        conn.execute(text(ddl.format(role=f'"{role}"')))
    check, subject = expected[0], expected[1].format(role=role)
    assert (check, subject) in findings_for(app)
    url = app.url.render_as_string(hide_password=False)
    assert main(["db", "audit", "--url", url]) == 1
    assert f"FAIL {check}: {subject}" in capsys.readouterr().out


def test_auditing_as_a_superuser_reports_the_superuser(engines: tuple[Engine, Engine]) -> None:
    owner, _ = engines
    with owner.connect() as conn:
        checks = {f.check for f in audit(conn)}
    assert "app-role" in checks


def test_unreachable_database_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["db", "audit", "--url", "postgresql+psycopg://nobody@127.0.0.1:1/none"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("tenancy: error: ") and err.count("\n") == 1


async def run_lifespan(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


def lifespan_app(engine: Engine) -> Any:
    from starlette.applications import Starlette

    from tenancy.clock import SYSTEM_CLOCK
    from tenancy.identity import DevIssuer, JWKSKeySource, TokenVerifier, trusted_issuer
    from tenancy.middleware import TenancyMiddleware
    from tenancy.scoping.audit import audit_engine
    from tenancy.tenants import TenantRegistry

    issuer = DevIssuer.generate()
    keys = JWKSKeySource(lambda: issuer.jwks(), algorithms=["EdDSA"])
    verifier = TokenVerifier(
        [trusted_issuer(issuer.issuer, audience="x", keys=keys, algorithms=["EdDSA"])],
        clock=SYSTEM_CLOCK,
    )
    return TenancyMiddleware(
        Starlette(),
        verifier=verifier,
        tenants=TenantRegistry(engine),
        region="eu-central-1",
        startup_audit=functools.partial(audit_engine, engine),
    )


@pytest.mark.anyio
async def test_middleware_refuses_to_start_on_a_failed_audit(
    engines: tuple[Engine, Engine],
) -> None:
    owner, app = engines
    assert [m["type"] for m in await run_lifespan(lifespan_app(app))] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    with owner.begin() as conn:
        conn.execute(text("ALTER TABLE projects NO FORCE ROW LEVEL SECURITY"))
    sent = await run_lifespan(lifespan_app(app))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "rls-forced" in sent[0]["message"]
