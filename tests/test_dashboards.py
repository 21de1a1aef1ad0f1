"""The Grafana dashboards: valid provisioning files, and every panel's SQL runs on a real store.

The store is a real PostgreSQL OpsStore filled by real runs of the jobs that have landed
(data-integrity over two real databases, the BigQuery cost jobs on the emulator, both on the
demo's seeded data) and, for the rest, the way those jobs write (`tell` inside a flow run,
`record_metrics` with their metric names).
Grafana itself is not run here: its SQL macros and template variables are expanded the way
Grafana documents them for PostgreSQL (`$__timeFilter(col)` -> `col BETWEEN '<from>' AND
'<to>'`, a multi-value variable with "All" -> every value of its query, quoted and
comma-separated), then each query runs on the store and must return rows.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from prefect import flow
from psycopg.conninfo import conninfo_to_dict

from blocks.pipelines import IntegrityPipelines
from blocks.store import OpsStore, load_store
from blocks.warehouse import WarehouseConnection
from deployments.demo import bigquery_with_history
from deployments.demo_seed import BQ_JOBS_TABLE, BQ_PROJECTS, seed_pipeline
from deployments.local_snowflake import (
    create_account_usage,
    fakesnow_server,
    save_connector,
    seed_connection,
    seed_usage,
)
from flows.bigquery_cost_report import bigquery_cost_report
from flows.bigquery_query_cost_watch import bigquery_query_cost_watch
from flows.data_integrity import data_integrity
from flows.snowflake_cost_report import snowflake_cost_report
from flows.snowflake_query_cost_watch import snowflake_query_cost_watch
from rules.aws_cost import CostLine, TagLine, metric_rows, tag_metric_rows
from rules.findings import Coverage, Finding, Severity
from rules.iac_drift import Coverage as ManagedShare
from rules.iac_drift import coverage_rows
from rules.lambda_health import LambdaFunction, LambdaMetrics
from rules.lambda_health import metric_rows as lambda_rows
from rules.queue_health import Queue
from rules.queue_health import metric_rows as queue_rows
from rules.redshift_health import Spill, WlmQueue, metric_points
from tasks.tell import tell
from tests.conftest import fresh_database

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
PANEL_TYPES = {"stat", "table", "timeseries", "barchart"}
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _provisioning(kind: str) -> dict:
    [path] = (DASHBOARDS / "provisioning" / kind).glob("*.yaml")
    return yaml.safe_load(path.read_text())


# --- structure ----------------------------------------------------------------------------


def test_provisioning_files_are_valid_for_grafana():
    sources = _provisioning("datasources")
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "grafana-postgresql-datasource" and source["uid"] == "ops-store"
    assert {"url", "user", "jsonData", "secureJsonData"} <= set(source)
    assert "password" not in source and "password" in source["secureJsonData"]  # never in plain

    providers = _provisioning("dashboards")
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert set(_dashboards()) == {"aws-cost.json", "bigquery.json", "findings.json", "iac.json", "integrity.json", "pipelines.json",
                                   "redshift.json", "snowflake.json"}


@pytest.mark.parametrize("name", sorted(_dashboards()))
def test_dashboard_json_follows_grafanas_model(name):
    dash = _dashboards()[name]
    datasource = {"type": "grafana-postgresql-datasource", "uid": "ops-store"}
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dash["uid"])
    assert dash["title"] and isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["time"]["from"].startswith("now-") and "id" not in dash  # Grafana assigns ids
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for v in variables.values():
        assert v["type"] == "query" and v["datasource"] == datasource and v["query"]

    ids, cells = set(), set()
    for panel in dash["panels"]:
        assert isinstance(panel["id"], int) and panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["type"] in PANEL_TYPES and panel["title"]
        assert panel["datasource"] == datasource
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        mine = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not (mine & cells), f"{name}: panel {panel['title']!r} overlaps another"
        cells |= mine
        if "repeat" in panel:
            assert panel["repeat"] in variables
        assert {"defaults", "overrides"} <= set(panel["fieldConfig"])
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in panel["targets"]:
            assert t["datasource"] == datasource and t["rawQuery"] is True and t["rawSql"].strip()
            assert t["format"] == ("time_series" if panel["type"] == "timeseries" else "table")
            for used in re.findall(r"\$\{?([A-Za-z_]+)", t["rawSql"]):
                assert used in variables or used == "__timeFilter", f"{name}: ${used} undefined"


# --- every panel's SQL on a filled store -------------------------------------------------


@flow(name="dashboard-fill")
def fill_findings(store: str, job: str, findings: list[Finding], at: datetime) -> None:
    tell(job, findings, load_store(store), at, Coverage({f.scope for f in findings} or {"-"}))


def _finding(kind: str, resource: str, severity: str = "warning", usd: float | None = None,
             scope: str = "123456789012/us-east-1") -> Finding:
    return Finding(kind=kind, resource_id=resource, scope=scope, severity=Severity(severity),
                   reason=f"{resource} planted for the dashboards", monthly_cost_usd=usd)


@pytest.fixture
def pipelines_block(pg_admin: str) -> Iterator[Callable[[], str]]:
    """The demo's pipeline (`orders`: a day missing in the target, loads stopped 3 h ago) between
    two fresh databases; yields a function that seeds them and returns the block's name."""
    with fresh_database(pg_admin) as app, fresh_database(pg_admin) as analytics:

        def make() -> str:
            seed_pipeline(app, analytics, NOW)
            sides = {}
            for side, dsn in (("source", app), ("target", analytics)):
                p = conninfo_to_dict(dsn)
                block = f"{side}-{uuid.uuid4().hex[:8]}"
                WarehouseConnection(host=p.get("host", "127.0.0.1"), port=int(p.get("port", 5432)),
                                    database=p["dbname"], user=p.get("user", "postgres")).save(block)
                sides[side] = block
            block = f"pipelines-{uuid.uuid4().hex[:8]}"
            IntegrityPipelines(pipelines=[{
                "name": "orders", "window_days": 7, "freshness_sla_minutes": 60,
                "source": {"connection": sides["source"], "table": "public.orders",
                           "day_column": "created_at", "freshness_column": "updated_at"},
                "target": {"connection": sides["target"], "table": "raw.orders",
                           "day_column": "created_at", "freshness_column": "loaded_at"},
            }]).save(block)
            return block

        yield make


# (service, linked account, USD per day) of the planted AWS bill
AWS_BILL = [("Amazon Redshift", "111111111111", 120.0), ("Amazon Simple Storage Service", "111111111111", 30.5),
            ("Amazon Redshift", "222222222222", 10.25)]
integrity: list = []  # what the real runs returned, to compare with the panels
report: list = []
snowflake: list = []


@pytest.fixture
def filled(pg_store: OpsStore, pipelines_block) -> OpsStore:
    integrity.clear()
    report.clear()
    snowflake.clear()
    name = pg_store._block_document_name
    yesterday = NOW - timedelta(days=1)
    # Findings through real flow runs of the tell step; one resolves on the second run.
    fill_findings(name, "idle-resources", [
        _finding("idle-eip", "eipalloc-1", usd=3.65), _finding("unattached-volume", "vol-1", usd=20.0),
        _finding("unattached-volume", "vol-2", usd=40.0)], yesterday)
    fill_findings(name, "idle-resources", [
        _finding("idle-eip", "eipalloc-1", usd=3.65), _finding("unattached-volume", "vol-1", usd=20.0)], NOW)
    fill_findings(name, "redshift-health", [_finding("redshift-cpu-high", "analytics", "critical")], NOW)
    fill_findings(name, "query-watch", [_finding("long-running-query", "analytics/pid-4242")], NOW)
    pg_store.record_action("idle-resources", action="release-address", resource_id="eipalloc-9",
                           scope="123456789012/us-east-1", dry_run=False, outcome="done", now=NOW)

    # Redshift history through the job's own producer of store rows.
    rows = []
    for minutes in (10, 5):
        rows += metric_points("analytics", NOW - timedelta(minutes=minutes),
                              {"cpu_percent": 96.0, "disk_percent": 91.0, "connections": 310.0},
                              [WlmQueue("etl", 6, 5, 4, 5, 420.0)], Spill(40, 6, 3072.0, 15))
    pg_store.record_metrics("redshift-health", rows)
    # Lambda and SQS history through those jobs' own producers of store rows.
    functions = [LambdaFunction("payments-webhook", "us-east-1", 30), LambdaFunction("orders-ingest", "us-east-1", 30)]
    dlq = Queue("orders-dlq", "arn:aws:sqs:us-east-1:123456789012:orders-dlq", "us-east-1", visible=7)
    source = Queue("orders", "arn:aws:sqs:us-east-1:123456789012:orders", "us-east-1",
                   dead_letter_target_arn=dlq.arn, max_receive_count=5)
    for minutes in (20, 5):
        ts = NOW - timedelta(minutes=minutes)
        pg_store.record_metrics("lambda-health", lambda_rows(functions, {
            "payments-webhook": LambdaMetrics(400, 60, 0, 1200.0), "orders-ingest": LambdaMetrics(400, 0, 12, 900.0)},
            "123456789012/us-east-1", ts))
        pg_store.record_metrics("queue-health", queue_rows([dlq, source], {"orders-dlq": 172800.0},
                                                           "123456789012/us-east-1", ts))
    fill_findings(name, "queue-health", [_finding("dlq-messages", "orders-dlq")], NOW)
    # IaC: the managed share through iac-drift's own producer of store rows, two runs.
    for days, managed_instances in ((2, 6), (0, 8)):
        share = ManagedShare()
        share.total.update({"aws_instance": 10, "aws_s3_bucket": 4})
        share.managed.update({"aws_instance": managed_instances, "aws_s3_bucket": 3})
        pg_store.record_metrics("iac-drift", coverage_rows(share, "123456789012/us-east-1", "123456789012",
                                                           "us-east-1", NOW - timedelta(days=days)))
    fill_findings(name, "iac-drift", [_finding("unmanaged-resource", "aws_instance/i-0abc", usd=30.37),
                                      _finding("unmanaged-resource", "aws_instance/i-0def", usd=60.74),
                                      _finding("unmanaged-resource", "aws_sqs_queue/manual")], NOW)
    fill_findings(name, "iac-health", [_finding("stale-state-lock", "dynamodb:tf-locks/b/k", "critical")], NOW)
    fill_findings(name, "lambda-least-privilege", [_finding("lambda-over-privileged", "etl")], NOW)
    # AWS cost: two days of bill and a tag, through aws-cost-report's own producers of store rows.
    days = [(NOW - timedelta(days=d)).date() for d in (2, 1)]
    bill = [CostLine(day, service, account, usd) for day in days for service, account, usd in AWS_BILL]
    pg_store.record_metrics("aws-cost-report", [{"name": "aws_cost_usd:111111111111", **row}
                                                for row in metric_rows(bill)])
    pg_store.record_metrics("aws-cost-report", [{"name": "aws_cost_usd_by_tag:111111111111:team", **row}
                                                for row in tag_metric_rows(TagLine(day, "team", "data", 100.0)
                                                                           for day in days)])
    fill_findings(name, "aws-cost-report", [_finding("aws-cost-anomaly", f"{days[1]}/Amazon Redshift", usd=None,
                                                     scope="111111111111")], NOW)
    # data-integrity and the BigQuery cost jobs: real flow runs over the demo's seeded data.
    integrity.append(data_integrity(pipelines_file=None, pipelines_block=pipelines_block(), store=name))
    with bigquery_with_history(scale=1) as endpoint:
        scope = {"projects": list(BQ_PROJECTS), "emulator_endpoint": endpoint, "jobs_table": BQ_JOBS_TABLE,
                 "store": name}
        report.append(bigquery_cost_report(**scope, policy={"days": 3}))
        bigquery_query_cost_watch(**scope)
    # Snowflake: real runs of the cost report and the query cost watch on a fakesnow account
    # (ACCOUNT_USAGE as tables with the documented columns, deployments/local_snowflake.py).
    with fakesnow_server() as endpoint:
        with seed_connection(endpoint) as conn:
            create_account_usage(conn)
            seed_usage(conn, (NOW - timedelta(days=1)).date())
        block = save_connector(f"sf-{uuid.uuid4().hex[:8]}", "acme-prod")
        scope = {"accounts": [block], "endpoints": {block: endpoint}, "store": name}
        snowflake.append(snowflake_cost_report(**scope, now=NOW))
        snowflake_query_cost_watch(**scope, now=NOW, policy={"lookback_hours": 48})
    fill_findings(name, "snowflake-warehouse-hygiene", [
        _finding("snowflake-auto-suspend-off", "ETL_WH", "critical", usd=2920.0, scope="acme-prod")], NOW)
    return pg_store


def _conninfo(store: OpsStore) -> str:
    return store.url.get_secret_value()


def _quoted(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def _expand(sql: str, values: dict[str, str], start: datetime, end: datetime) -> str:
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'", sql)
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in sql, f"unexpanded macro or variable in: {sql}"
    return sql


def _queries(dash: dict, conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(panel title, format, SQL) for every panel, with each repeated panel once per value."""
    options = {v["name"]: [r[0] for r in conn.execute(v["query"]) if r[0] is not None]
               for v in dash["templating"]["list"]}
    assert all(options.values()), f"a variable query found nothing: {options}"
    every = {name: _quoted(values) for name, values in options.items()}
    start, end = NOW - timedelta(days=30), datetime.now(timezone.utc) + timedelta(hours=1)
    found = []
    for panel in dash["panels"]:
        repeats = options[panel["repeat"]] if "repeat" in panel else [None]
        for value in repeats:
            bound = dict(every) | ({panel["repeat"]: value} if value else {})
            for t in panel["targets"]:
                found.append((f"{panel['title']} [{value}]" if value else panel["title"], t["format"],
                              _expand(t["rawSql"], bound, start, end)))
    return found


def test_every_panel_query_returns_rows_from_a_real_store(filled):
    with psycopg.connect(_conninfo(filled)) as conn:
        for name, dash in _dashboards().items():
            for title, fmt, sql in _queries(dash, conn):
                cur = conn.execute(sql)
                columns = [c.name for c in cur.description]
                rows = cur.fetchall()
                assert rows, f"{name}: panel {title!r} returned no rows"
                if fmt == "time_series":
                    assert columns[:3] == ["time", "metric", "value"], (name, title, columns)
                    assert all(isinstance(r[0], datetime) for r in rows)


def test_panels_show_the_exact_figures(filled):
    with psycopg.connect(_conninfo(filled)) as conn:
        dashes = {d["uid"]: d for d in _dashboards().values()}
        results = {}
        for uid, dash in dashes.items():
            for title, _, sql in _queries(dash, conn):
                results[(uid, title)] = conn.execute(sql).fetchall()

    by_job = {r[0]: r for r in results[("dpo-findings", "Open findings and $ by job")]}
    assert by_job["idle-resources"][1:6] == (2, 0, 2, 0, Decimal("23.65"))  # vol-2 resolved
    assert by_job["redshift-health"][1:3] == (1, 1)
    # idle + the Snowflake warehouse at risk + the two unmanaged instances iac-drift planted
    assert results[("dpo-findings", "Monthly cost of open findings")] == [(pytest.approx(23.65 + 2920.0 + 91.11),)]
    assert sum(r[2] for r in results[("dpo-findings", "Findings resolved per day")]) == 1

    # BigQuery: the panels add up to what the report itself computed, per user and in total.
    lines = report[0]["lines"]
    expected = {}
    for line in lines:
        expected[line.user] = expected.get(line.user, 0) + line.cost_usd
    per_user = {}
    for user, _, usd, *_ in results[("dpo-bigquery", "Cost per user (range)")]:
        per_user[user] = per_user.get(user, 0) + float(usd)
    assert per_user == pytest.approx(expected, abs=0.01) and len(per_user) == 3
    [(total,)] = results[("dpo-bigquery", "Cost in range")]
    assert total == pytest.approx(sum(line.cost_usd for line in lines))
    assert len(results[("dpo-bigquery", "Expensive queries")]) == 3  # the planted full scans

    # Snowflake: the panels add up to what the report computed, per user and in total.
    lines = snowflake[0]["lines"]
    expected = {}
    for line in lines:
        expected[line.user] = expected.get(line.user, 0) + line.usd
    per_user = {}
    for user, _, _, _, usd, *_ in results[("dpo-snowflake", "Cost per user (range)")]:
        per_user[user] = per_user.get(user, 0) + float(usd)
    assert per_user == pytest.approx(expected, abs=0.02) and len(per_user) >= 4
    [(total,)] = results[("dpo-snowflake", "Cost in range")]
    assert total == pytest.approx(sum(line.usd for line in lines)) and total > 0
    # ALICE's attributed $9 merge and DAVE's X-Large report query ($40, estimated)
    assert sorted(r[2] for r in results[("dpo-snowflake", "Expensive queries")]) == ["etl-1", "rep-1"]
    [(_, _, _, _, usd_per_month, _)] = results[("dpo-snowflake", "Warehouse hygiene: $/month at risk")]
    assert usd_per_month == Decimal("2920.00")

    # Integrity: the status row shows what the run reported for the pipeline.
    [run_row] = integrity[0]
    [(pipeline, status, source, target, diff, lag, _, open_findings)] = results[("dpo-integrity", "Status per pipeline")]
    assert (pipeline, status) == ("orders", "critical")
    assert (source, target, diff, lag) == (run_row["source_count"], run_row["target_count"],
                                           run_row["diff"], run_row["lag_minutes"])
    assert diff == target - source < 0 and lag >= 180 and "stale-data" in open_findings

    dlq = results[("dpo-pipelines", "Messages in dead-letter queues")]
    assert [(metric, value) for _, metric, value in dlq] == [("123456789012/us-east-1/orders-dlq", 7.0)] * 2
    errors = {(m, v) for _, m, v in results[("dpo-pipelines", "Lambda errors per window")]}
    assert errors == {("123456789012/us-east-1/payments-webhook", 60.0), ("123456789012/us-east-1/orders-ingest", 0.0)}

    shares = results[("dpo-iac", "Managed share per account and kind (latest run)")]
    assert [(k, int(r), int(m), float(p)) for _, k, r, m, p in shares] == [
        ("aws_instance", 10, 8, 80.0), ("aws_s3_bucket", 4, 3, 75.0)]  # the latest run only
    unmanaged = results[("dpo-iac", "Created outside IaC: open findings and $/month per kind")]
    assert unmanaged == [("aws_instance", 2, Decimal("91.11")), ("aws_sqs_queue", 1, Decimal("0.00"))]

    # AWS: two days of the planted bill, per service and account.
    assert results[("dpo-aws-cost", "Cost in range")] == [(pytest.approx(2 * sum(usd for *_, usd in AWS_BILL)),)]
    assert results[("dpo-aws-cost", "Cost per service and account (range)")] == [
        ("Amazon Redshift", "111111111111", Decimal("240.00"), False),
        ("Amazon Simple Storage Service", "111111111111", Decimal("61.00"), False),
        ("Amazon Redshift", "222222222222", Decimal("20.50"), False)]
    assert results[("dpo-aws-cost", "Cost per cost-allocation tag (range)")] == [("team", "data", Decimal("200.00"))]
    assert results[("dpo-aws-cost", "Cost anomalies open")] == [(1,)]

    redshift_panels = {t for (uid, t) in results if uid == "dpo-redshift"}
    assert {"$metric [redshift.cpu_percent]", "$metric [redshift.connections]"} <= redshift_panels
    spilled = results[("dpo-redshift", "Queries spilled to disk (% of the window's queries)")]
    assert [(metric, value) for _, metric, value in spilled] == [("analytics", 15.0)] * 2
