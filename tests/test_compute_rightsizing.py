"""compute-rightsizing: pure judgement, and the flow on moto with planted instances, databases,
clusters and 14 days of CloudWatch data (positives and traps), priced in us-east-1."""

import uuid
from datetime import date, datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from rules.compute_sizing import (
    ComputePolicy,
    InstanceUsage,
    judge_instances,
    one_size_down,
    stops,
    window,
)
from rules.pricing import BUNDLED
from tasks.aws.ec2 import Instance
from tests.approvals import run_and_answer
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

H = 730
MB = 1_000_000


def test_one_size_down_names_the_next_smaller_size():
    assert one_size_down("m5.xlarge") == ("m5.large", 2.0)
    assert one_size_down("t3.medium") == ("t3.small", 2.0)
    assert one_size_down("m5.2xlarge") == ("m5.xlarge", 2.0)
    assert one_size_down("t3.nano") is None and one_size_down("mac1.metal") is None


def _instance(itype="m5.xlarge", tags=None):
    return Instance("i-1", "us-east-1", itype, "running", datetime(2026, 1, 1, tzinfo=timezone.utc), "x86_64",
                    "ami-1", "ebs", tags=tags or {})


def _usage(cpu: list[float], peak: list[float], net_mb: float = 1, memory: float | None = None) -> InstanceUsage:
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(len(cpu))]
    return InstanceUsage(dict(zip(days, cpu, strict=True)), dict(zip(days, peak, strict=True)),
                         dict.fromkeys(days, net_mb * MB),
                         dict.fromkeys(days, memory) if memory is not None else {})


def test_trusted_advisor_rule_counts_low_days_not_low_hours():
    policy = ComputePolicy()
    with pytest.raises(ValueError, match="cannot exceed"):
        ComputePolicy(low_days=15)

    def kinds(usage, itype="m5.xlarge", tags=None):
        return [(f.kind, f.numbers.get("target_type")) for f in judge_instances(
            [_instance(itype, tags)], {"i-1": usage}, policy, BUNDLED)]

    # 3 low days of 14: not flagged, however quiet the rest of each day was.
    assert kinds(_usage([5] * 3 + [15] * 11, [20] * 14)) == []
    # 4 low days: one size down (CPU peak 20% -> 40% on half the size; memory unmeasured, said so).
    [f] = judge_instances([_instance()], {"i-1": _usage([5] * 4 + [15] * 10, [20] * 14)}, policy, BUNDLED)
    assert f.kind == "ec2-downsize" and "memory not measured" in f.reason
    assert f.monthly_cost_usd == pytest.approx((0.192 - 0.096) * H, abs=0.01)
    # Network above 5 MB makes a quiet-CPU day busy.
    assert kinds(_usage([5] * 14, [6] * 14, net_mb=6)) == []
    # Low every day: stop. Opted out or in an Auto Scaling group: reported, the stop is blocked.
    assert kinds(_usage([1] * 14, [2] * 14)) == [("ec2-low-utilization", None)]
    for tags, why in (({"dataplatform-ops:keep": ""}, "opt-out tag"), ({"aws:autoscaling:groupName": "web"}, "Auto Scaling")):
        found = judge_instances([_instance(tags=tags)], {"i-1": _usage([1] * 14, [2] * 14)}, policy, BUNDLED)
        [stop] = stops(found, [_instance(tags=tags)], [])
        assert why in stop.blocked and stop.saving == pytest.approx(0.192 * H, abs=0.01)
    # CPU peaks (50% -> 100%) or memory (45% -> 90%) forbid one size down.
    assert kinds(_usage([5] * 4 + [15] * 10, [50] * 14)) == []
    assert kinds(_usage([5] * 4 + [15] * 10, [20] * 14, memory=45)) == []
    assert kinds(_usage([5] * 4 + [15] * 10, [20] * 14, memory=40)) == [("ec2-downsize", "m5.large")]
    # m5 has no medium size: no bundled price, no named size.
    assert kinds(_usage([5] * 4 + [15] * 10, [20] * 14), itype="m5.large") == []


def _put(cw, namespace, name, dims, points):
    data = [{"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
             "Timestamp": ts, "Value": value} for ts, value in points]
    for i in range(0, len(data), 500):
        cw.put_metric_data(Namespace=namespace, MetricData=data[i:i + 500])


@pytest.fixture
def planted(aws):
    """Instances, databases and clusters with 14 whole days of metrics; -> (ids, creds block, now)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, _ = window(now, 14)
    days = [start + timedelta(days=d) for d in range(14)]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    rds = boto3.client("rds", region_name="us-east-1")
    redshift = boto3.client("redshift", region_name="us-east-1")
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]

    def instance(itype):
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=itype)["Instances"][0]["InstanceId"]

    ids = {role: instance(t) for role, t in (("idle", "t3.large"), ("night", "m5.large"), ("downsize", "m5.xlarge"),
                                             ("membound", "m5.xlarge"), ("nomem", "c5.xlarge"), ("kept", "t3.large"))}
    ec2.create_tags(Resources=[ids["kept"]], Tags=[{"Key": "dataplatform-ops:keep", "Value": "demo box"}])

    def ec2_day(role, day, cpu_points, net_bytes):
        dims = {"InstanceId": ids[role]}
        _put(cw, "AWS/EC2", "CPUUtilization", dims, [(day + timedelta(hours=h), v) for h, v in cpu_points])
        _put(cw, "AWS/EC2", "NetworkIn", dims, [(day + timedelta(hours=12), net_bytes / 2)])
        _put(cw, "AWS/EC2", "NetworkOut", dims, [(day + timedelta(hours=13), net_bytes / 2)])

    for n, day in enumerate(days):
        ec2_day("idle", day, [(12, 1.0)], 0.2 * MB)
        ec2_day("kept", day, [(12, 1.0)], 0.2 * MB)
        # Busy at night (90% from 00:00 to 03:59, 2% the other 20 hours: a 16.7% day) except two quiet days.
        ec2_day("night", day, [(h, 90.0 if h < 4 and n < 12 else 2.0) for h in range(24)], 1 * MB)
        for role in ("downsize", "membound", "nomem"):
            # Five quiet days (5%), nine at 15% on average with a 20% peak.
            ec2_day(role, day, [(10, 5.0)] if n < 5 else [(10, 10.0), (14, 20.0)], 1 * MB)
        for role, used in (("downsize", 30.0), ("membound", 70.0)):
            _put(cw, "CWAgent", "mem_used_percent", {"InstanceId": ids[role], "InstanceType": "m5.xlarge"},
                 [(day + timedelta(hours=14), used)])

    def database(name, db_class, connections):
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass=db_class, Engine="postgres",
                               AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="not-a-secret-1")
        _put(cw, "AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": name},
             [(day + timedelta(hours=12), c) for day, c in zip(days[7:], connections, strict=True)])

    database("idle-db", "db.m5.large", [0.0] * 7)
    database("weekly-db", "db.t3.medium", [0.0] * 3 + [4.0] + [0.0] * 3)  # the weekly report's run

    def cluster(name, node_type, nodes):
        redshift.create_cluster(ClusterIdentifier=name, NodeType=node_type, NumberOfNodes=nodes,
                                ClusterType="multi-node", MasterUsername="admin", MasterUserPassword="Not-a-secret-1")

    cluster("quiet-dw", "ra3.4xlarge", 4)
    cluster("busy-dw", "dc2.large", 2)
    for day in days:
        # Office hours 09:00-16:59 at 12%, 2% otherwise: a 5.3% day.
        _put(cw, "AWS/Redshift", "CPUUtilization", {"ClusterIdentifier": "quiet-dw"},
             [(day + timedelta(hours=h), 12.0 if 9 <= h < 17 else 2.0) for h in range(24)])
        _put(cw, "AWS/Redshift", "CPUUtilization", {"ClusterIdentifier": "busy-dw"}, [(day + timedelta(hours=10), 40.0)])
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return ids, creds, now


def test_flow_finds_planted_positives_and_spares_the_traps(planted, store):
    from flows.compute_rightsizing import compute_rightsizing

    ids, creds, now = planted
    result = compute_rightsizing(aws_credentials=creds, store=store._block_document_name, regions=["us-east-1"],
                                 now=now)
    got = {(f.kind, f.resource_id): f.monthly_cost_usd for f in result.findings}
    node_month = 3.26 * H
    assert got == pytest.approx({
        ("ec2-low-utilization", ids["idle"]): 0.0832 * H,  # stop
        ("ec2-low-utilization", ids["kept"]): 0.0832 * H,  # reported; its stop is blocked
        ("ec2-downsize", ids["downsize"]): (0.192 - 0.096) * H,  # m5.xlarge -> m5.large
        ("ec2-downsize", ids["nomem"]): (0.17 - 0.085) * H,  # c5.xlarge -> c5.large
        ("rds-no-connections", "idle-db"): 0.178 * H,
        # Paused 16 of 24 hours beats resizing 4 -> 2 nodes.
        ("redshift-low-cpu", "quiet-dw"): node_month * 4 * 16 / 24,
    }, abs=0.01)
    # Traps: busy at night on 12 of 14 days; memory-bound; used weekly; a busy cluster.
    flagged = {r for _, r in got}
    assert not flagged & {ids["night"], ids["membound"], "weekly-db", "busy-dw"}
    reason = {f.resource_id: f.reason for f in result.findings}
    assert "14 of 14 days at most 10% CPU and 5 MB network" in reason[ids["idle"]]
    assert "m5.xlarge -> m5.large: 5 of 14 days" in reason[ids["downsize"]]
    assert "peak CPU 20.0% -> 40%, peak memory 30.0% -> 60%" in reason[ids["downsize"]]
    assert "memory not measured" in reason[ids["nomem"]]
    assert "no connections on any of the last 7 days (DatabaseConnections max 0)" in reason["idle-db"]
    assert "at most 5.3% on all 14 days (peak hour 12%)" in reason["quiet-dw"]
    assert "busy UTC hours 09-16" in reason["quiet-dw"] and "resize to 2 nodes" in reason["quiet-dw"]
    assert result.details == [2]  # one GetMetricData call for EC2 and Redshift, one for RDS
    offers = {o.item_id: o.eligible for o in result.offers}
    assert offers == {ids["idle"]: True, ids["kept"]: False, "idle-db": True}

    # Approval offers the eligible stops, nothing pre-selected; the person picks the idle instance.
    state = run_and_answer(compute_rightsizing, {"approved": [ids["idle"]]}, apply=True, aws_credentials=creds,
                           store=store._block_document_name, regions=["us-east-1"], now=now)
    assert state.is_completed(), state
    ec2 = boto3.client("ec2", region_name="us-east-1")
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
              for i in r["Instances"]}
    assert states[ids["idle"]] in ("stopping", "stopped") and states[ids["kept"]] == "running"
    assert boto3.client("rds", region_name="us-east-1").describe_db_instances(
        DBInstanceIdentifier="idle-db")["DBInstances"][0]["DBInstanceStatus"] == "available"
    assert [(a["resource_id"], a["outcome"]) for a in store.actions_of("compute-rightsizing")] == [(ids["idle"], "done")]


def test_metrics_come_in_calls_of_500_queries(aws):
    """130 instances x 4 series = 520 queries: two calls, not one per instance."""
    from tasks.aws.clients import Account
    from tasks.aws.ec2 import list_instances
    from tasks.aws.utilization import utilization

    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=130, MaxCount=130, InstanceType="t3.micro")
    account = Account(AwsCredentials(region_name="us-east-1"))
    instances = list_instances.fn(account, "us-east-1")
    start, end = window(datetime.now(timezone.utc), 14)
    usage = utilization.fn(account, "us-east-1", instances, [], [], start, end, end - timedelta(days=7))
    assert len(usage.instances) == 130 and usage.calls == 2


def test_least_privilege_policy():
    import flows.compute_rightsizing as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    read = flow_actions(module, read_only=True)
    assert read == {"ec2:DescribeInstances", "rds:DescribeDBInstances", "redshift:DescribeClusters",
                    "cloudwatch:GetMetricData", "cloudwatch:ListMetrics"} | TARGETS
    assert flow_actions(module) - read == {"ec2:StopInstances", "rds:StopDBInstance"}


@scenario_for("compute-rightsizing")
def least_privilege_scenario(planted):
    from flows.compute_rightsizing import compute_rightsizing

    ids, creds, now = planted
    ec2 = boto3.client("ec2", region_name="us-east-1")
    rds = boto3.client("rds", region_name="us-east-1")

    def state():
        instances = {i["InstanceId"]: i["State"]["Name"] in ("stopping", "stopped")
                     for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
        return instances | {d["DBInstanceIdentifier"]: d["DBInstanceStatus"] for d in rds.describe_db_instances()["DBInstances"]}

    return Scenario(compute_rightsizing, creds, dict(regions=["us-east-1"], now=now),
                    {ids["idle"], ids["kept"], ids["downsize"], ids["nomem"], "idle-db", "quiet-dw"},
                    drop="redshift:DescribeClusters", approve=[ids["idle"], "idle-db"], withhold="rds:StopDBInstance",
                    withheld={"idle-db"}, state=state)
