"""redshift-health: CloudWatch metrics seeded in moto (in process) and WLM state in the Redshift
system-view fixture schema on the real PostgreSQL (deployments/redshift_views.sql: STV_WLM_QUERY_STATE,
STV_WLM_SERVICE_CLASS_CONFIG and SYS_QUERY_HISTORY with the AWS-documented columns).

moto stands in for CloudWatch because AWS cannot run here; note that moto's GetMetricData
ignores the namespace when dimensions are given, so each test uses its own cluster id."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import boto3
import psycopg
import pytest
from prefect_aws import AwsCredentials

from flows.redshift_health import redshift_health
from rules.findings import Severity
from rules.redshift_health import RedshiftHealthPolicy, Threshold, WlmQueue, judge_queues
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)
from tests.redshift_fixture import load_redshift_views, warehouse_block

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def put(namespace: str, dims: dict, metric: str, value: float, at: datetime) -> None:
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_data(
        Namespace=namespace,
        MetricData=[{"MetricName": metric, "Value": value, "Timestamp": at,
                     "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]}])


@pytest.fixture
def creds(aws) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(name)
    return name


def run(block, store, creds, now, policy=None):
    return redshift_health(policy=policy or RedshiftHealthPolicy(), warehouse=block._block_document_name,
                           aws_credentials=creds, store=store._block_document_name, now=now)


def test_queue_rules():
    policy = RedshiftHealthPolicy(queued_queries=Threshold(warn=5, critical=20),
                                  queue_wait_minutes=Threshold(warn=5, critical=15))
    found = judge_queues("c1", "r/c1", [WlmQueue("etl", 6, 5, 7, 5, 400),
                                       WlmQueue("bi", 7, 5, 1, 1, 1000),
                                       WlmQueue("idle", 8, 5, 0, 0, 0)], policy)
    assert [(f.kind, f.resource_id, f.severity) for f in found] == [
        ("redshift-queue-backlog", "c1/etl", Severity.WARNING),
        ("redshift-queue-wait", "c1/etl", Severity.WARNING),
        ("redshift-queue-wait", "c1/bi", Severity.CRITICAL),
    ]


def plant_busy_cluster(pg_dsn: str):
    """A cluster that was hot, full and unhealthy an hour ago with a queueing etl WLM queue, and is
    healthy now; -> (its WarehouseConnection block, cluster id, a time inside the bad spell)."""
    load_redshift_views(pg_dsn)
    cluster = f"c-{uuid.uuid4().hex[:6]}"
    block = warehouse_block(pg_dsn, "redshift", cluster_identifier=cluster, region="us-east-1")
    dims = {"ClusterIdentifier": cluster}
    bad, good = NOW - timedelta(minutes=60), NOW - timedelta(minutes=5)
    for minute in range(3):  # a bad spell an hour ago ...
        at = bad + timedelta(minutes=minute)
        put("AWS/Redshift", dims, "CPUUtilization", 97, at)
        put("AWS/Redshift", dims, "PercentageDiskSpaceUsed", 84, at)
        put("AWS/Redshift", dims, "DatabaseConnections", 120, at)
        put("AWS/Redshift", dims, "HealthStatus", 0 if minute == 1 else 1, at)
        put("AWS/Redshift", dims, "MaintenanceMode", 0, at)
    for minute in range(3):  # ... and healthy now
        at = good + timedelta(minutes=minute)
        put("AWS/Redshift", dims, "CPUUtilization", 20, at)
        put("AWS/Redshift", dims, "PercentageDiskSpaceUsed", 60, at)
        put("AWS/Redshift", dims, "DatabaseConnections", 30, at)
        put("AWS/Redshift", dims, "HealthStatus", 1, at)
        put("AWS/Redshift", dims, "MaintenanceMode", 0, at)
    # 7 queries queued in the etl queue (service class 6) for up to 400 s, 5 running.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for i in range(12):
            state, queue_us = ("QueuedWaiting", (100 + i * 50) * 1_000_000) if i < 7 else ("Running", 0)
            conn.execute("insert into stv_wlm_query_state values (%s, %s, %s, 6, 1, getdate(), %s, %s, 0, 'normal')",
                         (1000 + i, i, 500 + i, state, queue_us))
    return block, cluster, bad + timedelta(minutes=5)


def busy_cluster_findings(cluster: str) -> set[tuple[str, str]]:
    return {("redshift-cpu-high", cluster), ("redshift-disk-high", cluster), ("redshift-unhealthy", cluster),
            ("redshift-queue-backlog", f"{cluster}/etl"), ("redshift-queue-wait", f"{cluster}/etl")}


def test_provisioned_cluster_findings_open_then_resolve(pg_dsn, store, creds):
    block, cluster, at = plant_busy_cluster(pg_dsn)
    found = run(block, store, creds, at)
    got = {(f.kind, f.resource_id): f for f in found}
    assert set(got) == busy_cluster_findings(cluster)
    assert got[("redshift-cpu-high", cluster)].severity is Severity.CRITICAL
    assert got[("redshift-cpu-high", cluster)].numbers["cpu_percent"] == 97
    assert got[("redshift-disk-high", cluster)].severity is Severity.WARNING
    assert got[("redshift-queue-backlog", f"{cluster}/etl")].numbers["queued"] == 7
    assert got[("redshift-queue-wait", f"{cluster}/etl")].numbers["longest_wait_s"] == 400
    assert len(store.findings_of("redshift-health", "open")) == 5

    # The queue drains and the metrics recover: everything resolves, once.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("delete from stv_wlm_query_state")
    assert run(block, store, creds, NOW) == []
    assert store.findings_of("redshift-health", "open") == []
    assert len(store.findings_of("redshift-health", "resolved")) == 5

    cpu = store.metric_history("redshift-health", "redshift.cpu_percent", cluster)
    assert [round(p["value"]) for p in cpu] == [97, 20]
    queued = store.metric_history("redshift-health", "redshift.wlm.queued", f"{cluster}/etl")
    assert [p["value"] for p in queued] == [7, 0]


def test_serverless_rpu_and_outage_keeps_findings_open(pg_dsn, store, creds):
    load_redshift_views(pg_dsn)
    wg = f"wg-{uuid.uuid4().hex[:6]}"
    block = warehouse_block(pg_dsn, "redshift-serverless", workgroup_name=wg, region="us-east-1")
    put("AWS/Redshift-Serverless", {"Workgroup": wg}, "ComputeCapacity", 512, NOW - timedelta(minutes=3))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for i in range(6):
            conn.execute("insert into sys_query_history_seed (user_id, query_id, session_id, status, "
                         "start_time, query_text) values (10, %s, %s, 'queued', "
                         "dateadd('second', -400, getdate()), 'select 1')", (i, 900 + i))
    found = run(block, store, creds, NOW)
    assert {(f.kind, f.resource_id, f.severity) for f in found} == {
        ("redshift-rpu-high", wg, Severity.CRITICAL),
        ("redshift-queue-backlog", f"{wg}/serverless", Severity.WARNING),
        ("redshift-queue-wait", f"{wg}/serverless", Severity.WARNING),
    }

    # The warehouse becomes unreachable and CloudWatch has no data: a clear finding, and the
    # open findings stay open instead of being "resolved" by the outage.
    dead = warehouse_block(pg_dsn, "redshift-serverless", workgroup_name=wg, region="us-east-1",
                           port=1, save=False)
    dead.save(block._block_document_name, overwrite=True)
    found = run(block, store, creds, NOW + timedelta(hours=2))
    assert {f.kind for f in found} == {"warehouse-unreachable"}
    assert {f["kind"] for f in store.findings_of("redshift-health", "open")} == {
        "warehouse-unreachable", "redshift-rpu-high", "redshift-queue-backlog", "redshift-queue-wait"}
    assert store.findings_of("redshift-health", "resolved") == []


def test_queries_spilling_to_disk_are_memory_pressure(pg_dsn, store, creds):
    """Redshift has no memory metric: 3 of the window's ~10 queries spilled to disk (SYS_QUERY_DETAIL,
    1 MB blocks) -> critical; an hour-old spill and a query that did not spill are traps."""
    load_redshift_views(pg_dsn)
    cluster = f"c-{uuid.uuid4().hex[:6]}"
    block = warehouse_block(pg_dsn, "redshift", cluster_identifier=cluster, region="us-east-1")
    put("AWS/Redshift", {"ClusterIdentifier": cluster}, "CPUUtilization", 20, NOW - timedelta(minutes=3))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for i in range(10):  # 9 in the window, one an hour ago
            ago = 3600 if i == 9 else 60
            conn.execute("insert into sys_query_history_seed (user_id, query_id, session_id, status, start_time, "
                         "query_text) values (10, %s, 1, 'success', dateadd('second', -%s, getdate()), 'select 1')",
                         (7000 + i, ago))
        for query_id, local, remote in ((7000, 2048, 0), (7001, 0, 1024), (7002, 512, 512), (7003, 0, 0),
                                        (7009, 9999, 0)):
            conn.execute("insert into sys_query_detail values (%s, 'hash', %s, %s)", (query_id, local, remote))
    [spill] = [f for f in run(block, store, creds, NOW) if f.kind == "redshift-disk-spill"]
    assert spill.severity is Severity.CRITICAL and spill.resource_id == cluster
    assert spill.numbers["spilled"] == 3 and spill.numbers["spilled_mb"] == 4096
    assert 9 <= spill.numbers["queries"] <= 11  # the seeded 9, plus live sessions such as the check's own
    assert "3 of" in spill.reason and "(4.0 GB)" not in spill.reason and "4.0 GB" in spill.reason
    history = store.metric_history("redshift-health", "redshift.spill.mb", cluster)
    assert [p["value"] for p in history] == [4096]


@scenario_for("redshift-health")
def least_privilege_scenario(aws, pg_dsn):
    block, cluster, at = plant_busy_cluster(pg_dsn)
    return Scenario(redshift_health, plain_creds(), dict(warehouse=block._block_document_name, now=at),
                    {r for _, r in busy_cluster_findings(cluster)}, drop="cloudwatch:GetMetricData")
