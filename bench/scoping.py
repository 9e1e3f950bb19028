"""Cost of scoping on PostgreSQL: TenantSession + RLS vs a hand-written WHERE.

What it measures, in one process and one run, on the local PostgreSQL:
(a) baseline: a superuser (RLS never applies) with a plain ``Session`` and a hand-written
    ``WHERE tenant_id = :t``;
(b) scoped: the application role (NOSUPERUSER NOBYPASSRLS, DML only) with a
    ``TenantSession`` inside a bound context and no tenant filter in the query: the ORM
    criteria and the RLS policy supply it, and ``set_config(..., true)`` runs per
    transaction.
Two shapes, each one short transaction per operation as a web request would run it: a
primary-key lookup and a 100-row page. Rounds alternate (a), (b); medians are reported.
It also prints EXPLAIN as the app role under RLS, to show the primary-key index is used.

The async variant measures the same shapes the same way with SQLAlchemy's asyncio
extension, for both async drivers (``postgresql+psycopg`` async and ``postgresql+asyncpg``):
(a) a plain ``AsyncSession`` as superuser with the hand-written ``WHERE``; (b) an
``AsyncTenantSession`` as the app role, no tenant filter in the query. Each ratio compares
variants of one driver, measured interleaved in the same run and the same event loop.

    .venv/bin/python bench/scoping.py [--seconds 3] [--rounds 3] [--only sync|async] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import Engine, String, create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenancy.context import Principal, TenantContext, bind
from tenancy.scoping import AsyncTenantSession, TenantScoped, TenantSession
from tenancy.scoping.rls import enable_rls, grant_app_role

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TENANTS, ROWS_PER_TENANT, TARGET = 20, 5_000, 0.85
ASYNC_DRIVERS = ("psycopg", "asyncpg")  # postgresql+psycopg picks psycopg's async API

Op = Callable[[str, str], int]
AsyncOp = Callable[[str, str], Awaitable[int]]
Results = dict[str, dict[str, dict[str, list[float]]]]  # mode -> shape -> variant -> op/s


class Base(DeclarativeBase):
    pass


class Item(TenantScoped, Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


def context(tenant: str) -> TenantContext:
    return TenantContext(
        tenant,
        tenant[:8],
        "eu-central-1",
        Principal(issuer="bench", tenant_id=tenant, subject="bench"),
        "bench",
    )


def setup(owner: Engine, role: str) -> list[str]:
    tenants = [str(uuid.uuid4()) for _ in range(TENANTS)]
    with owner.begin() as conn:
        Base.metadata.create_all(conn)
        for tenant in tenants:
            conn.execute(
                text(
                    "INSERT INTO items (tenant_id, id, name) SELECT :t, "
                    "lpad(g::text, 12, '0'), 'item ' || g "
                    "FROM generate_series(1, :n) g"
                ),
                {"t": tenant, "n": ROWS_PER_TENANT},
            )
        enable_rls(conn, [Item.__table__])  # type: ignore[list-item]
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
        grant_app_role(conn, role, [Item.__table__])  # type: ignore[list-item]
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE items"))
    return tenants


def workloads(owner: Engine, app: Engine) -> dict[str, dict[str, Op]]:
    plain = sessionmaker(owner)
    scoped = sessionmaker(app, class_=TenantSession)

    def base_pk(t: str, i: str) -> int:
        with plain() as s:
            return len(s.scalars(select(Item).where(Item.tenant_id == t, Item.id == i)).all())

    def base_page(t: str, i: str) -> int:
        with plain() as s:
            q = select(Item).where(Item.tenant_id == t, Item.id >= i).order_by(Item.id).limit(100)
            return len(s.scalars(q).all())

    def scoped_pk(t: str, i: str) -> int:
        with bind(context(t)), scoped() as s:
            return len(s.scalars(select(Item).where(Item.id == i)).all())

    def scoped_page(t: str, i: str) -> int:
        with bind(context(t)), scoped() as s:
            q = select(Item).where(Item.id >= i).order_by(Item.id).limit(100)
            return len(s.scalars(q).all())

    return {
        "pk lookup": {"baseline": base_pk, "scoped": scoped_pk},
        "100-row page": {"baseline": base_page, "scoped": scoped_page},
    }


def async_workloads(owner: AsyncEngine, app: AsyncEngine) -> dict[str, dict[str, AsyncOp]]:
    plain = async_sessionmaker(owner)
    scoped = async_sessionmaker(app, class_=AsyncTenantSession)

    async def base_pk(t: str, i: str) -> int:
        async with plain() as s:
            q = select(Item).where(Item.tenant_id == t, Item.id == i)
            return len((await s.scalars(q)).all())

    async def base_page(t: str, i: str) -> int:
        async with plain() as s:
            q = select(Item).where(Item.tenant_id == t, Item.id >= i).order_by(Item.id).limit(100)
            return len((await s.scalars(q)).all())

    async def scoped_pk(t: str, i: str) -> int:
        with bind(context(t)):
            async with scoped() as s:
                return len((await s.scalars(select(Item).where(Item.id == i))).all())

    async def scoped_page(t: str, i: str) -> int:
        with bind(context(t)):
            async with scoped() as s:
                q = select(Item).where(Item.id >= i).order_by(Item.id).limit(100)
                return len((await s.scalars(q)).all())

    return {
        "pk lookup": {"baseline": base_pk, "scoped": scoped_pk},
        "100-row page": {"baseline": base_page, "scoped": scoped_page},
    }


def ops_per_second(run: Op, tenants: list[str], seconds: float) -> float:
    rng = random.Random(7)
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        run(rng.choice(tenants), f"{rng.randint(1, ROWS_PER_TENANT - 100):012d}")
        done += 1
    return done / (time.perf_counter() - start)


async def async_ops_per_second(run: AsyncOp, tenants: list[str], seconds: float) -> float:
    rng = random.Random(7)
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        await run(rng.choice(tenants), f"{rng.randint(1, ROWS_PER_TENANT - 100):012d}")
        done += 1
    return done / (time.perf_counter() - start)


def sanity(work: dict[str, dict[str, Op]], tenants: list[str], app: Engine) -> None:
    a, b = tenants[0], tenants[1]
    for shape in work.values():
        assert shape["baseline"](a, "000000000001") == shape["scoped"](a, "000000000001") > 0
    with app.begin() as conn:  # the app role without a tenant: nothing
        assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 0
    with bind(context(a)), sessionmaker(app, class_=TenantSession)() as s:
        foreign = s.scalars(select(Item).where(Item.tenant_id == b)).all()
        assert foreign == [], "scoped session returned another tenant's rows"


async def async_sanity(
    work: dict[str, dict[str, AsyncOp]], tenants: list[str], app: AsyncEngine
) -> None:
    a, b = tenants[0], tenants[1]
    for shape in work.values():
        first = "000000000001"
        assert await shape["baseline"](a, first) == await shape["scoped"](a, first) > 0
    async with app.begin() as conn:  # the app role without a tenant: nothing
        assert (await conn.execute(text("SELECT count(*) FROM items"))).scalar() == 0
    with bind(context(a)):
        async with async_sessionmaker(app, class_=AsyncTenantSession)() as s:
            foreign = (await s.scalars(select(Item).where(Item.tenant_id == b))).all()
            assert foreign == [], "scoped async session returned another tenant's rows"


def explain(app: Engine, tenant: str) -> dict[str, list[str]]:
    plans = {}
    queries = {
        "pk lookup": "SELECT * FROM items WHERE id = '000000000042'",
        "100-row page": "SELECT * FROM items WHERE id >= '000000000042' ORDER BY id LIMIT 100",
    }
    with bind(context(tenant)), sessionmaker(app, class_=TenantSession)() as s:
        for shape, sql in queries.items():
            plans[shape] = list(s.execute(text("EXPLAIN " + sql)).scalars())
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (>= 2)")
    parser.add_argument("--only", choices=["sync", "async"], help="one variant (default: both)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    name = f"tenancy_bench_{uuid.uuid4().hex[:8]}"
    role = f"tenancy_bench_app_{uuid.uuid4().hex[:6]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    app_url = url.replace("postgres@", f"{role}@", 1)
    owner = create_engine(url, pool_size=1, max_overflow=0)
    app = create_engine(app_url, pool_size=1, max_overflow=0)
    drivers = () if args.only == "sync" else ASYNC_DRIVERS
    engines = {
        d: tuple(
            create_async_engine(u.replace("+psycopg", f"+{d}", 1), pool_size=1, max_overflow=0)
            for u in (url, app_url)
        )
        for d in drivers
    }
    results: Results = {}
    # One event loop for every async measurement, so the async engines' pools stay valid
    # between the rounds that interleave them with the sync ones.
    with asyncio.Runner() as loop:
        try:
            tenants = setup(owner, role)
            work = workloads(owner, app)
            sanity(work, tenants, app)
            async_work = {d: async_workloads(*engines[d]) for d in drivers}
            for d, shapes in async_work.items():
                loop.run(async_sanity(shapes, tenants, engines[d][1]))
            for _ in range(args.rounds):
                if args.only != "async":
                    for shape, variants in work.items():
                        for variant, run in variants.items():
                            rate = ops_per_second(run, tenants, args.seconds)
                            record(results, "sync psycopg", shape, variant, rate)
                for d, shapes in async_work.items():
                    for shape, async_variants in shapes.items():
                        for variant, async_run in async_variants.items():
                            rate = loop.run(async_ops_per_second(async_run, tenants, args.seconds))
                            record(results, f"async {d}", shape, variant, rate)
            plans = explain(app, tenants[0])
        finally:
            for pair in engines.values():
                for engine in pair:
                    loop.run(engine.dispose())
            app.dispose()
            owner.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            admin.dispose()
    report(results, plans, args)


def record(results: Results, mode: str, shape: str, variant: str, rate: float) -> None:
    results.setdefault(mode, {}).setdefault(shape, {}).setdefault(variant, []).append(rate)


def report(results: Results, plans: dict[str, list[str]], args: argparse.Namespace) -> None:
    medians = {
        mode: {s: {v: statistics.median(r) for v, r in vs.items()} for s, vs in shapes.items()}
        for mode, shapes in results.items()
    }
    ratios = {
        mode: {s: m["scoped"] / m["baseline"] for s, m in shapes.items()}
        for mode, shapes in medians.items()
    }
    index_used = {
        s: any("Index" in line for line in p) and not any("Seq Scan" in line for line in p)
        for s, p in plans.items()
    }
    if args.json:
        print(
            json.dumps(
                {
                    "medians_ops_per_s": medians,
                    "ratios": ratios,
                    "target": TARGET,
                    "index_used": index_used,
                    "plans": plans,
                    "rounds": args.rounds,
                    "seconds": args.seconds,
                },
                indent=2,
            )
        )
        return
    print(
        f"PostgreSQL, {TENANTS} tenants x {ROWS_PER_TENANT} rows, one transaction per op, "
        f"median of {args.rounds} x {args.seconds:g} s"
    )
    print(f"{'mode':15}{'shape':14}{'baseline op/s':>15}{'scoped op/s':>13}{'ratio':>7}")
    for mode, shapes in medians.items():
        for shape, m in shapes.items():
            print(
                f"{mode:15}{shape:14}{m['baseline']:>15.0f}{m['scoped']:>13.0f}"
                f"{ratios[mode][shape]:>7.2f}"
            )
    for mode, shapes_ratios in ratios.items():
        for shape, ratio in shapes_ratios.items():
            print(f"ratio scoped/baseline {mode} {shape}: {ratio:.2f} (target >= {TARGET:.2f})")
    for shape, plan in plans.items():
        print(
            f"EXPLAIN {shape} as the app role under RLS "
            f"({'index used' if index_used[shape] else 'NO INDEX'}):"
        )
        for line in plan:
            print("   ", line)


if __name__ == "__main__":
    main()
