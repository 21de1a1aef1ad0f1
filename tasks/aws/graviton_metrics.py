"""Daily CloudWatch series of resources moved to Graviton, for one account x region: one span that
covers every move's before and after windows, in one batched GetMetricData (500 series a call)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timezone

from prefect import task

from rules.graviton_trial import Series
from tasks.aws.clients import Account
from tasks.aws.cloudwatch import MetricData, MetricQuery, get_metric_data
from tasks.aws.permissions import requires

DAY = 86400

# Service -> (namespace, the dimension naming the resource, series name -> (metric, statistic));
# the series names are those rules/graviton_trial.py compares.
CLOUDWATCH = {
    "ec2": ("AWS/EC2", "InstanceId", {"cpu": ("CPUUtilization", "Average"), "net_in": ("NetworkIn", "Sum"),
                                      "net_out": ("NetworkOut", "Sum")}),
    "rds": ("AWS/RDS", "DBInstanceIdentifier", {"cpu": ("CPUUtilization", "Average"),
                                                "read_latency": ("ReadLatency", "Average"),
                                                "read_iops": ("ReadIOPS", "Average")}),
    "lambda": ("AWS/Lambda", "FunctionName", {"duration": ("Duration", "Sum"),
                                              "invocations": ("Invocations", "Sum")}),
}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


@task(name="before-after-metrics")
@requires("cloudwatch:GetMetricData")
def before_after_metrics(account: Account, region: str, resources: Sequence[tuple[str, str]],
                         start: date, end: date) -> dict[str, dict[str, dict[str, Series]]]:
    """Daily series over the whole UTC days [start, end) of (service, resource id) pairs:
    service -> resource id -> series name -> (day, value)."""
    queries: list[MetricQuery] = []
    names: dict[str, tuple[str, str, str]] = {}
    for n, (service, resource_id) in enumerate(resources):
        namespace, dimension, metrics = CLOUDWATCH[service]
        for name, (metric, stat) in metrics.items():
            query_id = f"m{n}_{name}"
            queries.append(MetricQuery(query_id, namespace, metric, {dimension: resource_id}, stat, DAY))
            names[query_id] = (service, resource_id, name)
    data = (get_metric_data(account.client("cloudwatch", region), queries, _midnight(start), _midnight(end))
            if queries else MetricData())
    found: dict[str, dict[str, dict[str, Series]]] = {}
    for query_id, (service, resource_id, name) in names.items():
        found.setdefault(service, {}).setdefault(resource_id, {})[name] = data.series.get(query_id, [])
    return found
