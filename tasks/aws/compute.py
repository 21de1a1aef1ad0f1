"""Compute collectors and power actions: RDS instances, Aurora clusters, ElastiCache, Lambda;
stop/start for EC2, RDS and Aurora. One task run per (account, region, resource type)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from botocore.exceptions import ClientError
from prefect import task

from blocks.store import OpsStore
from rules.parking import Parkable, ParkingItem, memory_key
from tasks.aws.clients import Account, PageCounter, error_summary, paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.ec2 import Instance, tag_dict
from tasks.aws.permissions import requires


@dataclass(frozen=True)
class DbInstance:
    db_id: str
    region: str
    db_class: str
    engine: str
    engine_version: str
    status: str
    cluster_id: str | None = None
    replica_of: str | None = None
    multi_az: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DbCluster:
    cluster_id: str
    region: str
    engine: str
    engine_version: str
    status: str
    members: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CacheCluster:
    cluster_id: str
    region: str
    node_type: str
    engine: str
    engine_version: str
    nodes: int


@dataclass(frozen=True)
class LambdaFunction:
    name: str
    region: str
    architecture: str
    memory_mb: int
    runtime: str | None
    package_type: str


@task(name="list-db-instances")
@requires("rds:DescribeDBInstances")
def list_db_instances(account: Account, region: str, counter: PageCounter | None = None) -> list[DbInstance]:
    rds = account.client("rds", region)
    return [
        DbInstance(
            db_id=d["DBInstanceIdentifier"], region=region, db_class=d["DBInstanceClass"],
            engine=d["Engine"], engine_version=d.get("EngineVersion", ""), status=d["DBInstanceStatus"],
            cluster_id=d.get("DBClusterIdentifier") or None,
            replica_of=d.get("ReadReplicaSourceDBInstanceIdentifier") or None,
            multi_az=bool(d.get("MultiAZ")), tags=tag_dict(d.get("TagList")),
        )
        for d in paginate(rds, "describe_db_instances", "DBInstances", counter=counter)
    ]


@task(name="list-db-clusters")
@requires("rds:DescribeDBClusters")
def list_db_clusters(account: Account, region: str, counter: PageCounter | None = None) -> list[DbCluster]:
    rds = account.client("rds", region)
    return [
        DbCluster(
            cluster_id=c["DBClusterIdentifier"], region=region, engine=c["Engine"],
            engine_version=c.get("EngineVersion", ""), status=c["Status"],
            members=tuple(m["DBInstanceIdentifier"] for m in c.get("DBClusterMembers", [])),
            tags=tag_dict(c.get("TagList")),
        )
        for c in paginate(rds, "describe_db_clusters", "DBClusters", counter=counter)
        if c["Engine"].startswith("aurora")
    ]


@task(name="list-cache-clusters")
@requires("elasticache:DescribeCacheClusters")
def list_cache_clusters(account: Account, region: str) -> list[CacheCluster]:
    ec = account.client("elasticache", region)
    return [
        CacheCluster(c["CacheClusterId"], region, c["CacheNodeType"], c["Engine"],
                     c.get("EngineVersion", ""), c.get("NumCacheNodes", 1))
        for c in paginate(ec, "describe_cache_clusters", "CacheClusters")
    ]


@task(name="list-functions")
@requires("lambda:ListFunctions")
def list_functions(account: Account, region: str) -> list[LambdaFunction]:
    lam = account.client("lambda", region)
    return [
        LambdaFunction(f["FunctionName"], region, (f.get("Architectures") or ["x86_64"])[0],
                       f.get("MemorySize", 128), f.get("Runtime"), f.get("PackageType", "Zip"))
        for f in paginate(lam, "list_functions", "Functions")
    ]


@task(name="lambda-gb-seconds")
@requires("cloudwatch:GetMetricData")
def lambda_gb_seconds(account: Account, region: str, functions: Sequence[LambdaFunction],
                      start: datetime, end: datetime) -> dict[str, float]:
    """GB-seconds per 30-day month per function, from the Duration sum over [start, end)."""
    if not functions:
        return {}
    queries = [MetricQuery(f"f{n}", "AWS/Lambda", "Duration", {"FunctionName": f.name}, "Sum", 86400)
               for n, f in enumerate(functions)]
    data = get_metric_data(account.client("cloudwatch", region), queries, start, end)
    scale = 30 / ((end - start).total_seconds() / 86400)
    return {f.name: sum(data.values(f"f{n}")) / 1000 * f.memory_mb / 1024 * scale
            for n, f in enumerate(functions)}


@task(name="orderable-db-classes")
@requires("rds:DescribeOrderableDBInstanceOptions")
def orderable_db_classes(account: Account, region: str, wanted: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which (engine, engine version, class) combinations RDS offers in the region."""
    rds = account.client("rds", region)
    offered = set()
    for engine, version, db_class in sorted(set(wanted)):
        options = paginate(rds, "describe_orderable_db_instance_options", "OrderableDBInstanceOptions",
                           Engine=engine, EngineVersion=version, DBInstanceClass=db_class)
        # Filter again: not every implementation honours DBInstanceClass.
        if any(o.get("DBInstanceClass") == db_class for o in options):
            offered.add((engine, version, db_class))
    return offered


def parkables(instances: Sequence[Instance], dbs: Sequence[DbInstance], clusters: Sequence[DbCluster]) -> list[Parkable]:
    """EC2 instances, RDS instances and Aurora clusters as parking candidates, with what the
    API would refuse (or undo) spelled out instead of attempted."""
    found = []
    for i in instances:
        reason = None
        if i.auto_scaling_group:
            reason = f"member of Auto Scaling group {i.auto_scaling_group}: the group would replace it"
        elif i.root_device_type == "instance-store":
            reason = "instance-store root device: such instances cannot be stopped"
        elif i.lifecycle == "spot":
            reason = "spot instance: park the spot request instead"
        found.append(Parkable("ec2", i.instance_id, i.region, i.state, (f"ec2:{i.instance_type}:hour",),
                              i.tags, reason))
    classes = {d.db_id: d.db_class for d in dbs}
    for d in dbs:
        if d.cluster_id:
            continue  # parked with its Aurora cluster
        reason = None
        if d.replica_of:
            reason = f"read replica of {d.replica_of}: replicas cannot be stopped"
        elif d.multi_az and d.engine.startswith("sqlserver"):
            reason = "SQL Server Multi-AZ instances cannot be stopped"
        found.append(Parkable("rds", d.db_id, d.region, d.status, (f"rds:{d.db_class}:hour",), d.tags, reason))
    for c in clusters:
        keys = tuple(f"rds:{classes[m]}:hour" for m in c.members if m in classes)
        found.append(Parkable("aurora", c.cluster_id, c.region, c.status, keys, c.tags))
    return found


_CALLS = {
    ("ec2", "stop"): ("ec2", lambda cl, rid: cl.stop_instances(InstanceIds=[rid])),
    ("ec2", "start"): ("ec2", lambda cl, rid: cl.start_instances(InstanceIds=[rid])),
    ("rds", "stop"): ("rds", lambda cl, rid: cl.stop_db_instance(DBInstanceIdentifier=rid)),
    ("rds", "start"): ("rds", lambda cl, rid: cl.start_db_instance(DBInstanceIdentifier=rid)),
    ("aurora", "stop"): ("rds", lambda cl, rid: cl.stop_db_cluster(DBClusterIdentifier=rid)),
    ("aurora", "start"): ("rds", lambda cl, rid: cl.start_db_cluster(DBClusterIdentifier=rid)),
}
# The resource is already where we wanted it (or moving there): nothing to do, not a failure.
_ALREADY = {"IncorrectInstanceState", "InvalidDBInstanceState", "InvalidDBInstanceStateFault",
            "InvalidDBClusterStateFault"}


@task(name="park-resources")
@requires("ec2:StopInstances", "ec2:StartInstances", "rds:StopDBInstance", "rds:StartDBInstance",
          "rds:StopDBCluster", "rds:StartDBCluster", write=True)
def park_resources(account: Account, region: str, items: Sequence[ParkingItem], store: OpsStore,
                   job: str, now: datetime, apply: bool) -> dict[str, str]:
    """Stop/start the planned items of one region; record every action and remember the
    transition acted on (only when really applied). Returns outcome by memory key."""
    outcomes = {}
    for item in items:
        r = item.resource
        key = memory_key(r)
        if not apply:
            outcome, detail = "planned", item.reason
        else:
            service, call = _CALLS[(r.kind, item.action)]
            try:
                call(account.client(service, region), r.resource_id)
                outcome, detail = "done", item.reason
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                outcome = "skipped" if code in _ALREADY else "failed"
                detail = error_summary(exc)
            if outcome != "failed" and item.remember:
                store.set_watermark(job, key, item.remember.dumps(), now)
        store.record_action(job, action=item.action, resource_id=r.resource_id, scope=region,
                            dry_run=not apply, outcome=outcome, detail=detail, now=now)
        outcomes[key] = outcome
    return outcomes


@task(name="stop-resources")
@requires("ec2:StopInstances", "rds:StopDBInstance", write=True)
def stop_resources(account: Account, region: str, stops: Sequence[tuple[str, str]], store: OpsStore, job: str,
                   now: datetime) -> dict[str, str]:
    """Stop approved (service, resource id) pairs, `ec2` or `rds`, and record each action;
    -> outcome by resource id. Already stopped (or stopping) counts as done before: skipped."""
    outcomes = {}
    for kind, resource_id in stops:
        service, call = _CALLS[(kind, "stop")]
        try:
            call(account.client(service, region), resource_id)
            outcome, detail = "done", "stopped"
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            outcome = "skipped" if code in _ALREADY else "failed"
            detail = error_summary(exc)
        store.record_action(job, action="stop", resource_id=resource_id, scope=region, dry_run=False,
                            outcome=outcome, detail=detail, now=now)
        outcomes[resource_id] = outcome
    return outcomes
