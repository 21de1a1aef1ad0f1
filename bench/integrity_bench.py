"""Benchmark: the data-integrity measure step against plain psycopg, same queries, same concurrency.

200 table pairs (source database, target database) of 100,000 rows each on the local
PostgreSQL. The measured path is what the flow runs: pipelines validated from config, one
query per table (count + max(updated_at)) built with `psycopg.sql`, connections from
`WarehouseConnection.connect()`, tables in parallel with a bound per connection, both
connections at once, then the judgement. The baseline runs `select count(*), max(updated_at)`
on every table with psycopg directly, the same number of sessions per database.

    uv run python bench/integrity_bench.py [--tables 200] [--rows 100000] [--bound 4] [--rounds 3]

The databases (`dpo_bench_src`, `dpo_bench_tgt`) are built once and reused; `--rebuild`
drops them first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blocks.warehouse import WarehouseConnection  # noqa: E402
from deployments.local_postgres import postgres_server, with_database  # noqa: E402
from rules.integrity import judge_pipeline, parse_pipelines, plan_queries  # noqa: E402
from tasks.measure import measure_postgres_tables  # noqa: E402

SRC, TGT = "dpo_bench_src", "dpo_bench_tgt"


def build(admin: str, tables: int, rows: int, rebuild: bool) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        if rebuild:
            for db in (TGT, SRC):
                conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        exists = {r[0] for r in conn.execute("select datname from pg_database")}
        if SRC in exists and TGT in exists:
            with psycopg.connect(with_database(admin, TGT)) as tgt:
                have = tgt.execute("select count(*) from pg_tables where tablename like 'orders_%'"
                                   ).fetchone()[0]
                n = tgt.execute("select count(*) from orders_000").fetchone()[0] if have else 0
            if have == tables and n == rows:
                return
            raise SystemExit(f"{SRC}/{TGT} exist with another shape: run with --rebuild")
        started = time.perf_counter()
        conn.execute(f"CREATE DATABASE {SRC}")
        with psycopg.connect(with_database(admin, SRC), autocommit=True) as src:
            for i in range(tables):
                src.execute(
                    f"create table orders_{i:03d} as select g as id, "
                    f"timestamptz '2026-11-01' + g * interval '1 second' as updated_at "
                    f"from generate_series(1, {rows}) g"
                )
            src.execute("vacuum analyze")
        conn.execute(f"CREATE DATABASE {TGT} TEMPLATE {SRC}")  # a file copy: same rows
        print(f"built {tables} x 2 tables of {rows:,} rows in {time.perf_counter() - started:.1f} s")


def block_for(admin: str, db: str) -> WarehouseConnection:
    p = conninfo_to_dict(admin)
    return WarehouseConnection(host=p.get("host", "127.0.0.1"), port=int(p.get("port", 5432)),
                               database=db, user=p.get("user", "postgres"),
                               password=p.get("password"), statement_timeout_seconds=300)


def run_flow_path(admin: str, tables: int, bound: int) -> float:
    started = time.perf_counter()
    pipelines = parse_pipelines([
        {"name": f"orders-{i:03d}",
         "source": {"connection": "src", "table": f"public.orders_{i:03d}",
                    "freshness_column": "updated_at"},
         "target": {"connection": "tgt", "table": f"public.orders_{i:03d}",
                    "freshness_column": "updated_at"}}
        for i in range(tables)
    ], "bench")
    now = datetime.now(timezone.utc)
    queries = plan_queries(pipelines, now)
    blocks = {"src": block_for(admin, SRC), "tgt": block_for(admin, TGT)}
    with ThreadPoolExecutor(2) as both:  # as the flow does: every connection at the same time
        futures = [both.submit(measure_postgres_tables.fn, blocks[name],
                               [q for q in queries if q.side.connection == name], bound)
                   for name in blocks]
        measured = {k: v for f in futures for k, v in f.result().items()}
    verdicts = [judge_pipeline(p, {r: measured[f"{p.name}:{r}"] for r in ("source", "target")},
                               [], now) for p in pipelines]
    elapsed = time.perf_counter() - started
    bad = [v.row for v in verdicts if v.row["status"] != "ok"]
    assert not bad, bad[:3]
    return elapsed


def run_direct(admin: str, tables: int, bound: int) -> float:
    started = time.perf_counter()

    def one_database(db: str) -> list[tuple]:
        local = threading.local()  # one session per worker thread, opened on first use
        conns: list[psycopg.Connection] = []

        def count(i: int) -> tuple:
            if not hasattr(local, "conn"):
                local.conn = psycopg.connect(with_database(admin, db), autocommit=True)
                conns.append(local.conn)
            return local.conn.execute(
                f"select count(*), max(updated_at) from orders_{i:03d}").fetchone()

        with ThreadPoolExecutor(bound) as pool:
            rows = list(pool.map(count, range(tables)))
        for conn in conns:
            conn.close()
        return rows

    with ThreadPoolExecutor(2) as both:
        results = list(both.map(one_database, (SRC, TGT)))
    elapsed = time.perf_counter() - started
    assert results[0] == results[1]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bound", type=int, default=4, help="sessions per database")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    with postgres_server() as admin:
        build(admin, args.tables, args.rows, args.rebuild)
        run_direct(admin, args.tables, args.bound)  # warm the cache for both paths alike
        ours, direct = [], []
        for _ in range(args.rounds):  # interleaved, so machine load hits both alike
            direct.append(run_direct(admin, args.tables, args.bound))
            ours.append(run_flow_path(admin, args.tables, args.bound))
    med_ours, med_direct = statistics.median(ours), statistics.median(direct)
    print(f"{args.tables} table pairs x {args.rows:,} rows, {args.bound} sessions per database, "
          f"{args.rounds} rounds")
    print(f"direct psycopg : median {med_direct:.2f} s  (runs: "
          f"{', '.join(f'{x:.2f}' for x in direct)})")
    print(f"data-integrity : median {med_ours:.2f} s  (runs: "
          f"{', '.join(f'{x:.2f}' for x in ours)})")
    print(f"ratio          : {med_ours / med_direct:.2f}x (target: within 1.30x)")


if __name__ == "__main__":
    main()
