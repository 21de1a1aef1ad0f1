"""How busy compute and databases were: EC2 CPU (daily and hourly), network and agent memory, RDS
connections and hourly CPU, Redshift CPU for one account x region, in batched GetMetricData (500
queries a call)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from prefect import task

from rules.compute_sizing import Cluster, InstanceUsage, by_day, sum_by_day
from tasks.aws.clients import Account, paginate
from tasks.aws.cloudwatch import MetricData, MetricQuery, get_metric_data
from tasks.aws.compute import DbInstance
from tasks.aws.ec2 import Instance, tag_dict
from tasks.aws.permissions import requires

DAY, HOUR = 86400, 3600


@dataclass
class Utilization:
    """What CloudWatch saw, per resource id; and how many GetMetricData calls it took."""

    instances: dict[str, InstanceUsage] = field(default_factory=dict)
    connections: dict[str, dict[date, float]] = field(default_factory=dict)
    redshift_cpu: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    # Hourly series over the whole lookback: when EC2 instances and RDS instances are busy.
    cpu_hourly: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    db_cpu_hourly: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    db_connections_hourly: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    calls: int = 0


@task(name="list-redshift-clusters")
@requires("redshift:DescribeClusters")
def list_redshift_clusters(account: Account, region: str) -> list[Cluster]:
    return [Cluster(c["ClusterIdentifier"], region, c["NodeType"], c.get("NumberOfNodes", 1),
                    c.get("ClusterStatus", ""), tag_dict(c.get("Tags")))
            for c in paginate(account.client("redshift", region), "describe_clusters", "Clusters")]


@requires("cloudwatch:ListMetrics")
def _memory_series(cw, instance_ids: set[str]) -> dict[str, dict[str, str]]:
    """The agent's mem_used_percent series per instance: its dimensions depend on the agent's
    `append_dimensions`, so they are listed rather than guessed."""
    found = {}
    for m in paginate(cw, "list_metrics", "Metrics", Namespace="CWAgent", MetricName="mem_used_percent"):
        dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
        if dims.get("InstanceId") in instance_ids:
            found.setdefault(dims["InstanceId"], dims)
    return found


@task(name="utilization")
@requires("cloudwatch:GetMetricData", "cloudwatch:ListMetrics")
def utilization(account: Account, region: str, instances: Sequence[Instance], dbs: Sequence[DbInstance],
                clusters: Sequence[Cluster], start: datetime, end: datetime, db_start: datetime) -> Utilization:
    """Daily EC2 figures, hourly EC2 CPU, Redshift hourly CPU and RDS hourly CPU and connections
    (instances outside Aurora clusters) over [start, end); daily RDS connection maxima over
    [db_start, end). Periods start at `start`: pass midnight UTC for calendar days."""
    cw = account.client("cloudwatch", region)
    running = [i for i in instances if i.state == "running"]
    memory = _memory_series(cw, {i.instance_id for i in running}) if running else {}
    queries: list[MetricQuery] = []
    for n, i in enumerate(running):
        dims = {"InstanceId": i.instance_id}
        queries += [MetricQuery(f"cpu{n}", "AWS/EC2", "CPUUtilization", dims, "Average", DAY),
                    MetricQuery(f"cpumax{n}", "AWS/EC2", "CPUUtilization", dims, "Maximum", DAY),
                    MetricQuery(f"netin{n}", "AWS/EC2", "NetworkIn", dims, "Sum", DAY),
                    MetricQuery(f"netout{n}", "AWS/EC2", "NetworkOut", dims, "Sum", DAY),
                    MetricQuery(f"cpuh{n}", "AWS/EC2", "CPUUtilization", dims, "Average", HOUR)]
        if i.instance_id in memory:
            queries.append(MetricQuery(f"mem{n}", "CWAgent", "mem_used_percent", memory[i.instance_id], "Maximum", DAY))
    # Redshift hourly: the pause/resume schedule needs the busy hours of the day.
    queries += [MetricQuery(f"rs{n}", "AWS/Redshift", "CPUUtilization", {"ClusterIdentifier": c.cluster_id},
                            "Average", HOUR) for n, c in enumerate(clusters)]
    # RDS hourly (idle or spiky load): Aurora cluster members are left to their cluster.
    standalone = [d for d in dbs if not d.cluster_id]
    for n, d in enumerate(standalone):
        dims = {"DBInstanceIdentifier": d.db_id}
        queries += [MetricQuery(f"dbcpuh{n}", "AWS/RDS", "CPUUtilization", dims, "Average", HOUR),
                    MetricQuery(f"dbconh{n}", "AWS/RDS", "DatabaseConnections", dims, "Maximum", HOUR)]
    data = get_metric_data(cw, queries, start, end) if queries else MetricData()
    # RDS needs its own (shorter) window: a second batch, not a call per database.
    db_queries = [MetricQuery(f"db{n}", "AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": d.db_id},
                              "Maximum", DAY) for n, d in enumerate(dbs)]
    db_data = get_metric_data(cw, db_queries, db_start, end) if db_queries else MetricData()
    return Utilization(
        instances={i.instance_id: InstanceUsage(
            cpu_avg=by_day(data.series.get(f"cpu{n}", [])), cpu_max=by_day(data.series.get(f"cpumax{n}", [])),
            network_bytes=sum_by_day(data.series.get(f"netin{n}", []), data.series.get(f"netout{n}", [])),
            memory_max=by_day(data.series.get(f"mem{n}", [])))
            for n, i in enumerate(running)},
        connections={d.db_id: by_day(db_data.series.get(f"db{n}", [])) for n, d in enumerate(dbs)},
        redshift_cpu={c.cluster_id: data.series.get(f"rs{n}", []) for n, c in enumerate(clusters)},
        cpu_hourly={i.instance_id: data.series.get(f"cpuh{n}", []) for n, i in enumerate(running)},
        db_cpu_hourly={d.db_id: data.series.get(f"dbcpuh{n}", []) for n, d in enumerate(standalone)},
        db_connections_hourly={d.db_id: data.series.get(f"dbconh{n}", []) for n, d in enumerate(standalone)},
        calls=data.calls + db_data.calls,
    )
