"""`redshift-health`: is the cluster (or Serverless workgroup) saturated, full, unhealthy, queueing?

CloudWatch AWS/Redshift (or AWS/Redshift-Serverless) for CPU, disk, connections, health,
maintenance and RPUs; SQL for the WLM queues. Findings open and resolve through the `tell`
step; every measured value goes to the store's metric history for trends.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import OpsStore, load_store
from blocks.warehouse import WarehouseConnection
from rules.config import ConfigError
from rules.findings import Coverage
from rules.query_watch import access_findings
from rules.redshift_health import (
    CHECK_KINDS,
    METRIC_KINDS,
    RedshiftHealthPolicy,
    judge_metrics,
    judge_queues,
    judge_spill,
    metric_points,
    summarize,
)
from tasks.aws.clients import error_summary
from tasks.aws.redshift_metrics import collect_redshift_metrics, metric_queries
from tasks.notify import on_flow_failure
from tasks.redshift import collect_wlm_state
from tasks.tell import tell

JOB = "redshift-health"
DEFAULT_POLICY = RedshiftHealthPolicy()


@flow(name=JOB, on_failure=[on_flow_failure])
def redshift_health(
    policy: RedshiftHealthPolicy = DEFAULT_POLICY,
    warehouse: WarehouseConnection | str = "warehouse",
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
):
    """Judge one Redshift cluster or Serverless workgroup.

    Args:
        policy: warn/critical thresholds per metric and the CloudWatch window.
        warehouse: the `WarehouseConnection` block (pick a saved one, or give its name); its `cluster_identifier` (or
            `workgroup_name`) and `region` say which CloudWatch metrics to read.
        aws_credentials: the `AwsCredentials` block (pick a saved one, or give its name) for CloudWatch.
        store: the `OpsStore` block (pick a saved one, or give its name).
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    ops_store = load_store(store)
    conn = load_block(WarehouseConnection, warehouse, "warehouse")
    creds = load_block(AwsCredentials, aws_credentials, "aws_credentials")
    target = conn.cluster_identifier or conn.workgroup_name
    if not conn.is_redshift or not target:
        raise ConfigError(
            f"WarehouseConnection {conn._block_document_name!r} (parameter `warehouse`) must be a redshift or "
            "redshift-serverless block with `cluster_identifier` or `workgroup_name` set: "
            "they name the CloudWatch metrics to read."
        )
    now = now or datetime.now(timezone.utc)
    region = conn.region or creds.region_name or "default region"
    specs, _ = metric_queries(conn.cluster_identifier, conn.workgroup_name)
    scope = f"{region}/{target}"
    coverage = Coverage({scope, conn.scope})

    try:
        series = collect_redshift_metrics(
            creds, conn.region, conn.cluster_identifier, conn.workgroup_name, now,
            timedelta(minutes=policy.lookback_minutes))
    except Exception as exc:  # CloudWatch down or denied: the SQL half still counts
        series = {}
        coverage.fail(scope, f"CloudWatch: {error_summary(exc)}", METRIC_KINDS)
    snap = collect_wlm_state(conn, policy.lookback_minutes)
    values = summarize(specs, series)
    if not values and not coverage.gaps:
        coverage.fail(scope, f"no datapoints in {region} for the last {policy.lookback_minutes} min: check "
                      "the block's `cluster_identifier`/`workgroup_name` and `region`.", METRIC_KINDS)
    for check, problem in snap.problems.items():  # the access findings say so, at `conn.scope`
        coverage.fail(scope, problem.message, CHECK_KINDS.get(check, set().union(*CHECK_KINDS.values())))

    findings = [*judge_metrics(target, scope, values, policy),
                *judge_queues(target, scope, snap.queues, policy),
                *judge_spill(target, scope, snap.spill, policy)]
    findings += access_findings(conn.scope, [(p.problem, p.message) for p in snap.problems.values()])

    ops_store.record_metrics(JOB, metric_points(target, now, values, snap.queues, snap.spill))
    tell(JOB, findings, ops_store, now, coverage,
         repeat_interval=timedelta(hours=policy.repeat_interval_hours), policy=policy)
    return findings
