"""CloudWatch metrics of a Redshift cluster (AWS/Redshift) or Serverless workgroup
(AWS/Redshift-Serverless), read in one GetMetricData call."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect_aws import AwsCredentials

from rules.redshift_health import PROVISIONED_METRICS, SERVERLESS_METRICS, MetricSpec
from tasks.aws.clients import Account
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.permissions import requires

PERIOD_SECONDS = 60


def metric_queries(
    cluster_identifier: str | None, workgroup_name: str | None
) -> tuple[tuple[MetricSpec, ...], list[MetricQuery]]:
    if cluster_identifier:
        specs, namespace, dims = PROVISIONED_METRICS, "AWS/Redshift", {
            "ClusterIdentifier": cluster_identifier}
    else:
        specs, namespace, dims = SERVERLESS_METRICS, "AWS/Redshift-Serverless", {
            "Workgroup": workgroup_name or ""}
    queries = [MetricQuery(id=s.key, namespace=namespace, metric=s.metric, dimensions=dims,
                           stat=s.stat, period=PERIOD_SECONDS) for s in specs]
    return specs, queries


@task(name="collect-redshift-metrics")
@requires("cloudwatch:GetMetricData")
def collect_redshift_metrics(
    credentials: AwsCredentials,
    region: str | None,
    cluster_identifier: str | None,
    workgroup_name: str | None,
    now: datetime,
    lookback: timedelta,
) -> dict[str, list[float]]:
    """Datapoints (oldest first) per metric key for the window ending at `now`."""
    _, queries = metric_queries(cluster_identifier, workgroup_name)
    cloudwatch = Account(credentials).client("cloudwatch", region)
    data = get_metric_data(cloudwatch, queries, now - lookback, now)
    return {q.id: data.values(q.id) for q in queries}
