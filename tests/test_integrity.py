"""data-integrity on two real PostgreSQL databases (source, target) with planted cases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from prefect.artifacts import Artifact
from psycopg.conninfo import conninfo_to_dict

from blocks.pipelines import IntegrityPipelines
from blocks.warehouse import WarehouseConnection
from flows.data_integrity import data_integrity, read_pipelines
from rules.config import ConfigError
from rules.findings import Finding
from rules.integrity import (
    JOB,
    Pipeline,
    TableMeasurement,
    coverage_of,
    judge_pipeline,
    parse_pipelines,
    plan_queries,
    volume_z_score,
)
from tasks.measure import postgres_query
from tests.conftest import fresh_database

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TODAY = NOW.date()


def day(n: int) -> date:
    return TODAY - timedelta(days=n)


# --- pure judgement ------------------------------------------------------------------------


def pipeline(**overrides) -> Pipeline:
    base = {
        "name": "orders", "owner": "@data-eng",
        "source": {"connection": "src", "table": "public.orders", "day_column": "created_at"},
        "target": {"connection": "tgt", "table": "raw.orders", "day_column": "created_at",
                   "freshness_column": "loaded_at"},
        "freshness_sla_minutes": 60,
    }
    return Pipeline.model_validate({**base, **overrides})


def test_tolerance_absolute_or_percent():
    src = TableMeasurement(count=10_000)
    short = TableMeasurement(count=9_990, latest=NOW)
    assert judge_pipeline(pipeline(tolerance_rows=10), {"source": src, "target": short}, [], NOW
                          ).row["status"] == "ok"
    assert judge_pipeline(pipeline(tolerance_pct=0.1), {"source": src, "target": short}, [], NOW
                          ).row["status"] == "ok"
    verdict = judge_pipeline(pipeline(tolerance_rows=9), {"source": src, "target": short}, [], NOW)
    [f] = verdict.findings
    assert (f.kind, f.severity, f.numbers["diff"]) == ("row-count-mismatch", "critical", -10)
    assert "@data-eng" in f.reason


def test_freshness_lag_vs_sla_and_volume_z_score():
    fresh = TableMeasurement(count=100, latest=NOW - timedelta(minutes=59))
    stale = TableMeasurement(count=100, latest=NOW - timedelta(minutes=61))
    p = pipeline(source=None)
    assert judge_pipeline(p, {"target": fresh}, [], NOW).findings == []
    [f] = judge_pipeline(p, {"target": stale}, [], NOW).findings
    assert (f.kind, f.numbers["lag_minutes"]) == ("stale-data", 61.0)
    history = [1000, 1010, 990, 1005, 995, 1000, 1003]
    assert volume_z_score(100, history[:6]) is None  # too little history to know "normal"
    assert volume_z_score(1000, history) == pytest.approx(-0.065, abs=0.001)
    [f] = judge_pipeline(p, {"target": fresh}, history, NOW).findings
    assert (f.kind, f.severity) == ("volume-anomaly", "warning")


def test_unmeasured_pipeline_keeps_its_findings_open():
    old = Finding(kind="row-count-mismatch", resource_id="orders", scope="tgt/raw.orders",
                  reason="x")
    from rules.integrity import TableError

    down = judge_pipeline(pipeline(), {"source": TableError("cannot connect"),
                                       "target": TableMeasurement(count=1, latest=NOW)}, [], NOW)
    assert down.row["status"] == "error" and not down.complete
    assert not coverage_of([pipeline()], [down]).covers(old.kind, old.scope, old.resource_id)
    healed = judge_pipeline(pipeline(), {"source": TableMeasurement(count=1),
                                         "target": TableMeasurement(count=1, latest=NOW)}, [], NOW)
    assert coverage_of([pipeline()], [healed]).covers(old.kind, old.scope, old.resource_id)


def test_config_errors_name_the_pipeline_and_the_field():
    good = {"name": "orders", "target": {"connection": "tgt", "table": "raw.orders"}}
    cases = [
        ({**good, "tolerence_rows": 5}, "pipeline 'orders', field `tolerence_rows`: Extra inputs"),
        ({**good, "tolerance_pct": -1}, "pipeline 'orders', field `tolerance_pct`"),
        ({**good, "target": {"connection": "tgt", "table": "a.b.c"}},
         "pipeline 'orders', field `target`: table: 'a.b.c' must be `table` or `schema.table`"),
        ({**good, "window_days": 3}, "pipeline 'orders': target.day_column: required with window_days"),
        ({**good, "freshness_sla_minutes": 30},
         "pipeline 'orders': target.freshness_column: required with freshness_sla_minutes"),
        ({**good, "target": {"connection": "t", "table": "raw.o", "filter": "1=1; drop table x"}},
         "pipeline 'orders', field `target.filter`: one boolean expression"),
        ({**good, "target": {"engine": "bigquery", "connection": "gcp",
                             "table": "proj-1.raw.orders; drop table x"}},
         "is not a valid BigQuery table name"),
        ({"target": good["target"]}, "pipeline '#1', field `name`: Field required"),
    ]
    for item, expected in cases:
        with pytest.raises(ConfigError) as info:
            parse_pipelines({"pipelines": [item]}, "pipelines.yaml")
        assert expected in str(info.value)
        assert str(info.value).startswith("pipelines.yaml: ")
    with pytest.raises(ConfigError, match="pipeline 'orders', field `name`: declared more than once"):
        parse_pipelines([good, good], "pipelines.yaml")
    with pytest.raises(ConfigError, match="field `pipelines`"):
        parse_pipelines({"pipeline": [good]}, "pipelines.yaml")


def test_repository_pipelines_file_is_valid_and_paths_stay_in_the_repo():
    assert [p.name for p in read_pipelines("config/pipelines.yaml", None)] == [
        "orders", "events-to-bigquery"]
    with pytest.raises(ConfigError, match="pipelines_file: .* outside the repository"):
        read_pipelines("../../etc/passwd", None)


def test_identifiers_are_quoted_by_the_driver():
    [q] = plan_queries([pipeline(source=None, target={
        "connection": "t", "table": 'public.orders; drop table x', "day_column": 'day"col',
        "freshness_column": "loaded_at"}, freshness_sla_minutes=None, window_days=2)], NOW)
    query, params = postgres_query(q)
    text = query.as_string(None)
    assert '"public"."orders; drop table x"' in text and '"day""col"' in text
    assert params == {"window_start": day(2)}


def test_checksum_sql_per_dialect():
    [q, _] = plan_queries([pipeline(checksum_columns=["id", "status"])], NOW)
    postgres = postgres_query(q)[0].as_string(None)
    redshift = postgres_query(q, "redshift")[0].as_string(None)
    assert 'coalesce("id"::text, chr(30)) || chr(31) || coalesce("status"::text' in postgres
    assert "::bit(32)::bigint" in postgres and "strtol" not in postgres
    # Redshift: no bit type, `text` is varchar(256).
    assert 'coalesce("id"::varchar(65535), chr(30))' in redshift
    assert "strtol(substring(dpo_hash, 1, 8), 16)" in redshift and "bit(32)" not in redshift


# --- two real databases ------------------------------------------------------------------


@pytest.fixture
def pg_target(pg_admin: str) -> Iterator[str]:
    """A second fresh database: the target side."""
    with fresh_database(pg_admin) as dsn:
        yield dsn


def save_connection(dsn: str, **overrides) -> str:
    p = conninfo_to_dict(dsn)
    name = f"wh-{uuid.uuid4().hex[:8]}"
    WarehouseConnection(host=p.get("host", "127.0.0.1"), port=int(p.get("port", 5432)),
                        database=p["dbname"], user=p.get("user", "postgres"),
                        password=p.get("password"), **overrides).save(name)
    return name


ORDERS = """
create table {name} (id int primary key, status text not null, amount_cents bigint,
                     created_at timestamptz not null, loaded_at timestamptz not null)
"""


def plant(conn: psycopg.Connection, table: str, days=(1, 2, 3), per_day=100,
          loaded_ago=timedelta(minutes=10)) -> None:
    conn.execute(ORDERS.format(name=table))
    rows = [
        (d * 1000 + i, "paid" if i % 3 else "open", i * 100,
         datetime.combine(day(d), datetime.min.time(), timezone.utc) + timedelta(minutes=i),
         NOW - loaded_ago)
        for d in days for i in range(per_day)
    ]
    with conn.cursor() as cur:
        cur.executemany(f"insert into {table} values (%s, %s, %s, %s, %s)", rows)


def spec(name: str, src: str, tgt: str, table: str, target_table: str | None = None, **extra):
    return {
        "name": name, "owner": "@data-eng",
        "source": {"connection": src, "table": f"public.{table}", "day_column": "created_at",
                   "freshness_column": "loaded_at"},
        "target": {"connection": tgt, "table": f"public.{target_table or table}",
                   "day_column": "created_at", "freshness_column": "loaded_at"},
        "window_days": 5, "freshness_sla_minutes": 60,
        "checksum_columns": ["id", "status", "amount_cents", "created_at"], **extra,
    }


@pytest.mark.slow
def test_planted_cases_judged_right_and_healed(pg_dsn, pg_target, store):
    with psycopg.connect(pg_dsn, autocommit=True) as s, psycopg.connect(pg_target, autocommit=True) as t:
        for conn in (s, t):
            for table in ("orders_equal", "orders_missing", "orders_stale", "orders_changed"):
                plant(conn, table, loaded_ago=timedelta(minutes=10))
        t.execute("drop table orders_stale")
        plant(t, "orders_stale", loaded_ago=timedelta(hours=5))
        t.execute("delete from orders_missing where created_at::date = %s and id %% 5 = 0",
                  (day(2),))
        t.execute("update orders_changed set status = 'refunded' where id = 1007")
        plant(s, "orders_gone")
        plant(s, "orders_evil")
        t.execute("create table x (id int)")
        plant(t, "orders_volume", days=(1,))
        # A row older than the window differs too: outside the window, it is not compared.
        plant(s, "orders_old_ignored", days=(1, 9))
        plant(t, "orders_old_ignored", days=(1,))
    src, tgt = save_connection(pg_dsn), save_connection(pg_target)
    unreachable = save_connection(pg_dsn.replace(conninfo_to_dict(pg_dsn)["dbname"], "no_such_db"))
    declared = [
        spec("equal", src, tgt, "orders_equal"),
        spec("missing", src, tgt, "orders_missing"),
        spec("stale", src, tgt, "orders_stale"),
        spec("changed", src, tgt, "orders_changed"),
        spec("gone", src, tgt, "orders_gone"),
        spec("evil", src, tgt, "orders_evil", target_table="orders; drop table x"),
        spec("old-ignored", src, tgt, "orders_old_ignored"),
        spec("down", unreachable, tgt, "orders_equal"),
        {"name": "volume", "target": {"connection": tgt, "table": "orders_volume"},
         "volume_z_threshold": 2},
    ]
    block = f"pipelines-{uuid.uuid4().hex[:8]}"
    IntegrityPipelines(pipelines=declared).save(block)
    # The volume pipeline has 14 days of history near 1,000 rows; today it has 100.
    store.record_metrics(JOB, [{"name": "target_rows", "subject": "volume", "value": 1000 + i % 3,
                                "ts": NOW - timedelta(days=i + 1)} for i in range(10)])

    rows = data_integrity(pipelines_file=None, pipelines_block=block, store=store._block_document_name,
                          now=NOW)

    by_name = {r["pipeline"]: r for r in rows}
    assert {n: r["status"] for n, r in by_name.items()} == {
        "equal": "ok", "missing": "row-count-mismatch", "stale": "stale-data",
        "changed": "checksum-mismatch", "gone": "missing-table", "evil": "missing-table",
        "old-ignored": "ok", "down": "error", "volume": "volume-anomaly",
    }
    assert (by_name["missing"]["source_count"], by_name["missing"]["target_count"],
            by_name["missing"]["diff"]) == (300, 280, -20)
    assert by_name["stale"]["lag_minutes"] == 300.0
    assert by_name["equal"]["lag_minutes"] == 10.0
    opened = {f["resource_id"]: f for f in store.findings_of(JOB, status="open")}
    assert sorted(opened) == ["changed", "evil", "gone", "missing", "stale", "volume"]
    # The missing rows are located to the right day, and only that day.
    assert opened["missing"]["data"]["numbers"]["days"] == [
        {"day": day(2).isoformat(), "source": 100, "target": 80}]
    assert opened["changed"]["data"]["numbers"]["days"] == [day(1).isoformat()]
    assert "@data-eng" in opened["stale"]["reason"]
    # The malicious name was quoted: looked up as one table name, and nothing was dropped.
    with psycopg.connect(pg_target) as t:
        assert t.execute("select to_regclass('public.x') is not null").fetchone() == (True,)
    assert "orders; drop table x" in opened["evil"]["reason"]
    history = store.metric_history(JOB, "target_rows", "equal")
    assert [h["value"] for h in history] == [300.0]
    table = Artifact.get("data-integrity-findings").data
    table = json.loads(table) if isinstance(table, str) else table
    assert {r["pipeline"]: (r["source_count"], r["target_count"], r["diff"], r["status"])
            for r in table}["missing"] == (300, 280, -20, "row-count-mismatch")

    # Heal two pipelines; the others stay open, and nothing is resolved for the unreachable one.
    with psycopg.connect(pg_target, autocommit=True) as t:
        t.execute("drop table orders_missing")
        plant(t, "orders_missing")
        t.execute("update orders_changed set status = 'paid' where id = 1007")
    later = NOW + timedelta(minutes=5)
    rows = data_integrity(pipelines_file=None, pipelines_block=block, store=store._block_document_name,
                          now=later)
    assert {r["pipeline"]: r["status"] for r in rows}["missing"] == "ok"
    resolved = {f["resource_id"] for f in store.findings_of(JOB, status="resolved")}
    assert resolved == {"missing", "changed"}



def test_missing_connection_block_names_the_pipeline_and_field():
    from flows.data_integrity import load_connections

    [p] = parse_pipelines([{"name": "orders", "target": {"connection": "no-such-block",
                                                          "table": "raw.orders"}}], "test")
    with pytest.raises(ConfigError, match=r"`pipelines\[orders\]\.target\.connection`"):
        load_connections([p])


def test_tables_run_in_parallel_within_the_bound_and_failures_stay_local():
    import threading
    import time

    from rules.integrity import TableError
    from tasks.measure import _run_pooled

    lock, state = threading.Lock(), {"opened": 0, "running": 0, "peak": 0}
    queries = plan_queries([pipeline(name=f"p{i}", source=None, freshness_sla_minutes=None)
                            for i in range(12)], NOW)

    def open_conn():
        with lock:
            state["opened"] += 1
        return object()

    def measure(conn, q):
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(0.05)
        with lock:
            state["running"] -= 1
        if q.pipeline == "p3":
            raise RuntimeError("permission denied for table orders")
        return TableMeasurement(count=1)

    result = _run_pooled(queries, 3, open_conn, measure, lambda e: TableError(str(e)))
    assert state["peak"] == 3 and state["opened"] == 3  # parallel, never past the bound
    assert result["p3:target"] == TableError("permission denied for table orders")
    assert sum(isinstance(v, TableMeasurement) for v in result.values()) == 11


def test_a_check_that_cannot_run_as_declared_is_a_finding_not_only_an_error(pg_target, store):
    with psycopg.connect(pg_target, autocommit=True) as t:
        plant(t, "orders_typo", loaded_ago=timedelta(minutes=10))
    tgt = save_connection(pg_target)
    block = f"pipelines-{uuid.uuid4().hex[:8]}"
    IntegrityPipelines(pipelines=[{"name": "typo", "freshness_sla_minutes": 60, "target": {
        "connection": tgt, "table": "orders_typo", "freshness_column": "loaded_att"}}]).save(block)
    [row] = data_integrity(pipelines_file=None, pipelines_block=block, store=store._block_document_name, now=NOW)
    assert row["status"] == "broken-check"
    [f] = store.findings_of(JOB, status="open")  # a finding: announced in chat, not just a cell
    assert f["kind"] == "broken-check" and "loaded_att" in f["reason"] and "pipelines file" in f["reason"]
