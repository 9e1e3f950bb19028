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

    .venv/bin/python bench/scoping.py [--seconds 3] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, String, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenancy.context import Principal, TenantContext, bind
from tenancy.scoping import TenantScoped, TenantSession
from tenancy.scoping.rls import enable_rls, grant_app_role

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TENANTS, ROWS_PER_TENANT, TARGET = 20, 5_000, 0.85


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


def workloads(owner: Engine, app: Engine) -> dict[str, dict[str, Callable[[str, str], int]]]:
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


def ops_per_second(run: Callable[[str, str], int], tenants: list[str], seconds: float) -> float:
    rng = random.Random(7)
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        run(rng.choice(tenants), f"{rng.randint(1, ROWS_PER_TENANT - 100):012d}")
        done += 1
    return done / (time.perf_counter() - start)


def sanity(
    work: dict[str, dict[str, Callable[[str, str], int]]], tenants: list[str], app: Engine
) -> None:
    a, b = tenants[0], tenants[1]
    for shape in work.values():
        assert shape["baseline"](a, "000000000001") == shape["scoped"](a, "000000000001") > 0
    with app.begin() as conn:  # the app role without a tenant: nothing
        assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 0
    with bind(context(a)), sessionmaker(app, class_=TenantSession)() as s:
        foreign = s.scalars(select(Item).where(Item.tenant_id == b)).all()
        assert foreign == [], "scoped session returned another tenant's rows"


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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    name = f"tenancy_bench_{uuid.uuid4().hex[:8]}"
    role = f"tenancy_bench_app_{uuid.uuid4().hex[:6]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    owner = create_engine(url, pool_size=1, max_overflow=0)
    app = create_engine(url.replace("postgres@", f"{role}@", 1), pool_size=1, max_overflow=0)
    try:
        tenants = setup(owner, role)
        work = workloads(owner, app)
        sanity(work, tenants, app)
        results: dict[str, dict[str, list[float]]] = {
            s: {"baseline": [], "scoped": []} for s in work
        }
        for _ in range(args.rounds):
            for shape, variants in work.items():
                for variant, run in variants.items():
                    results[shape][variant].append(ops_per_second(run, tenants, args.seconds))
        plans = explain(app, tenants[0])
    finally:
        app.dispose()
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
    report(results, plans, args)


def report(
    results: dict[str, dict[str, list[float]]],
    plans: dict[str, list[str]],
    args: argparse.Namespace,
) -> None:
    medians = {s: {v: statistics.median(r) for v, r in vs.items()} for s, vs in results.items()}
    ratios = {s: m["scoped"] / m["baseline"] for s, m in medians.items()}
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
        f"median of {args.rounds} x {args.seconds:.0f} s"
    )
    print(f"{'shape':14}{'baseline op/s':>15}{'scoped op/s':>13}")
    for shape, m in medians.items():
        print(f"{shape:14}{m['baseline']:>15.0f}{m['scoped']:>13.0f}")
    for shape, ratio in ratios.items():
        print(f"ratio scoped/baseline {shape}: {ratio:.2f} (target >= {TARGET:.2f})")
    for shape, plan in plans.items():
        print(
            f"EXPLAIN {shape} as the app role under RLS "
            f"({'index used' if index_used[shape] else 'NO INDEX'}):"
        )
        for line in plan:
            print("   ", line)


if __name__ == "__main__":
    main()
