"""compute-rightsizing: pure judgement, and the flow on moto with planted instances, databases,
clusters and 14 days of CloudWatch data (positives and traps), priced in us-east-1 and in
ap-northeast-2. Seoul's EC2 prices and some RDS classes are exact there; the other RDS classes,
Redshift nodes, Fargate and Aurora Serverless v2 fall back to us-east-1, marked estimated (a
saving then takes both sides from us-east-1)."""

import uuid
from datetime import date, datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from rules.compute_sizing import (
    ComputePolicy,
    InstanceUsage,
    advised,
    fargate_size,
    judge_aurora_serverless,
    judge_databases,
    judge_instances,
    judge_serverless_instances,
    one_size_down,
    stops,
    window,
)
from rules.findings import Finding
from rules.pricing import BUNDLED
from tasks.aws.compute import DbInstance
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


# us-east-1 list prices, written out so that the expected figures do not come from the code under test.
M5_LARGE, DB_T3_MEDIUM, DB_M5_LARGE = 0.096, 0.072, 0.178
FARGATE_X86 = (0.04048, 0.004445)  # per vCPU-hour, per GB-hour
FARGATE_ARM = (0.03238, 0.00356)
ACU_HOUR = 0.12
SIZES = {"m5.large": {"vcpus": 2, "memory_mib": 8192}, "m7g.large": {"vcpus": 2, "memory_mib": 8192},
         "r5.large": {"vcpus": 2, "memory_mib": 16384}, "t3.medium": {"vcpus": 2, "memory_mib": 4096}}
DAY0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _hourly(cpu_of_hour, days=14) -> list[tuple[datetime, float]]:
    """One average per hour for `days` days; `cpu_of_hour(day, hour)` gives the value."""
    return [(DAY0 + timedelta(days=d, hours=h), cpu_of_hour(d, h)) for d in range(days) for h in range(24)]


def _night(d, h):
    return 90.0 if h < 4 and d < 12 else 2.0  # 48 busy hours of 336


def test_fargate_size_is_the_smallest_task_with_the_instance_s_vcpus_and_memory():
    assert fargate_size(2, 8) == (2, 8)
    assert fargate_size(2, 1) == (2, 4)  # 2 vCPU tasks have at least 4 GB
    assert fargate_size(4, 32) == (8, 32)  # 4 vCPU tasks have at most 30 GB
    assert fargate_size(8, 61) == (16, 64)  # 8 GB steps at 16 vCPU
    assert fargate_size(32, 128) is None and fargate_size(16, 128) is None


def test_ec2_busy_a_small_share_of_hours_is_a_fargate_candidate_priced_on_both_sides():
    policy = ComputePolicy()

    def judge(series, itype="m5.large", arch="x86_64", region="us-east-1", skip=(), **kw):
        i = Instance("i-1", region, itype, "running", DAY0, arch, "ami-1", "ebs", **kw)
        return judge_serverless_instances([i], {"i-1": series}, SIZES, policy, BUNDLED, skip)

    [f] = judge(_hourly(_night))
    busy_month = 48 / 336 * H
    fargate = round(busy_month * (2 * FARGATE_X86[0] + 8 * FARGATE_X86[1]), 2)
    assert f.kind == "ec2-serverless-candidate" and f.severity == "info"
    assert f.monthly_cost_usd == pytest.approx(M5_LARGE * H - fargate, abs=0.01)
    assert f.numbers["busy_hours"] == 48 and f.numbers["busy_utc_hours"] == [0, 1, 2, 3]
    assert f.numbers["cpu_p95"] == 90.0 and f.numbers["fargate_monthly_usd"] == fargate
    assert "busy in 48 of 336 hours (14.3%" in f.reason and "busy UTC hours 00-03" in f.reason
    assert "2 vCPU / 8 GiB Fargate task (x86_64) running only in its 104 busy hours a month $12.15/month" in f.reason
    assert "can be started on demand" in f.reason and "Lambda not priced" in f.reason
    assert "estimated" not in f.reason
    # Graviton: the ARM Fargate prices.
    [arm] = judge(_hourly(_night), itype="m7g.large", arch="arm64")
    arm_fargate = round(busy_month * (2 * FARGATE_ARM[0] + 8 * FARGATE_ARM[1]), 2)
    assert arm.monthly_cost_usd == pytest.approx(0.0816 * H - arm_fargate, abs=0.01)
    # Traps: busy all day; busy office hours (8 of 24 hours > 15%); never busy (a downsize matter);
    # a spot or Windows instance; one already advised to stop; too few hours measured.
    assert judge(_hourly(lambda d, h: 50.0)) == []
    assert judge(_hourly(lambda d, h: 60.0 if 9 <= h < 17 else 2.0)) == []
    assert judge(_hourly(lambda d, h: 8.0)) == []
    assert judge(_hourly(_night), lifecycle="spot") == [] and judge(_hourly(_night), platform="windows") == []
    assert judge(_hourly(_night), skip={"i-1"}) == []
    # What is skipped: resources already advised to stop or to go one size down (one saving each).
    done = [Finding(kind=k, resource_id=r, reason="") for k, r in (
        ("ec2-low-utilization", "i-1"), ("ec2-downsize", "i-2"), ("rds-no-connections", "db"), ("redshift-low-cpu", "dw"))]
    assert advised(done) == {"i-1", "i-2", "db"}
    assert judge(_hourly(_night, days=7)) == []


def test_serverless_prices_in_seoul_are_marked_estimated():
    """ap-northeast-2 has no bundled Fargate price: the us-east-1 one stands in and the finding says
    so. The Seoul instance price is exact, but a saving is taken on one basis: both sides at
    us-east-1 (Seoul's m5.large, 0.118, less a us-east-1 Fargate task would overstate it)."""
    i = Instance("i-1", "ap-northeast-2", "m5.large", "running", DAY0, "x86_64", "ami-1", "ebs")
    [f] = judge_serverless_instances([i], {"i-1": _hourly(_night)}, SIZES, ComputePolicy(), BUNDLED)
    hour, vcpu, gb = (BUNDLED.get("ap-northeast-2", k) for k in
                      ("ec2:m5.large:hour", "fargate:x86_64:vcpu-hour", "fargate:x86_64:gb-hour"))
    assert not hour.estimated and hour.usd == 0.118
    assert vcpu.estimated and gb.estimated and (vcpu.usd, gb.usd) == FARGATE_X86
    fargate = round(48 / 336 * H * (2 * vcpu.usd + 8 * gb.usd), 2)
    assert f.monthly_cost_usd == pytest.approx(round(0.096 * H, 2) - fargate, abs=0.01)
    assert f.numbers["estimated_price"] is True and "(estimated price)" in f.reason
    d = DbInstance("db", "ap-northeast-2", "db.t3.medium", "postgres", "16.4", "available")
    [a] = judge_aurora_serverless([d], {"db": _hourly(_weekly)}, {}, SIZES, ComputePolicy(), BUNDLED)
    acu = BUNDLED.get("ap-northeast-2", "aurora:serverless-v2:acu-hour")
    assert acu.estimated and a.numbers["estimated_price"] is True and "(estimated price)" in a.reason
    aurora = round((6 / 336 * H * 2 + (H - 6 / 336 * H) * 0.5) * acu.usd, 2)
    assert a.monthly_cost_usd == pytest.approx(
        round(BUNDLED.get("ap-northeast-2", "rds:db.t3.medium:hour").usd * H, 2) - aurora, abs=0.01)


@pytest.mark.parametrize(("region", "db_class", "multi_az", "saving", "estimated"), [
    ("us-east-1", "db.t4g.medium", False, 47.45, False),  # 0.065 x 730
    ("ap-northeast-2", "db.t4g.medium", False, 74.46, False),  # Seoul's own 0.102 x 730
    ("ap-northeast-2", "db.r7g.large", True, 418.87, False),  # 0.2869 x 730 x 2 (the standby) = 418.874
    ("ap-northeast-2", "db.m5.large", False, 129.94, True),  # no Seoul figure: us-east-1's 0.178 x 730
])
def test_rds_no_connections_is_priced_in_its_region(region, db_class, multi_az, saving, estimated):
    d = DbInstance("db", region, db_class, "postgres", "16.4", "available", multi_az=multi_az)
    quiet_week = {date(2026, 11, 1) + timedelta(days=n): 0.0 for n in range(7)}
    [f] = judge_databases([d], {"db": quiet_week}, ComputePolicy(), BUNDLED)
    assert (f.kind, f.monthly_cost_usd) == ("rds-no-connections", saving)
    assert ("(estimated price)" in f.reason) is estimated


def _weekly(d, h):
    return 60.0 if d in (3, 10) and 12 <= h < 15 else 2.0  # the weekly report: 6 busy hours of 336


def test_rds_idle_or_spiky_is_an_aurora_serverless_candidate_when_cheaper():
    policy = ComputePolicy()

    def judge(series, db_class="db.t3.medium", engine="postgres", **kw):
        d = DbInstance("db", "us-east-1", db_class, engine, "16.4", kw.pop("status", "available"), **kw)
        connections = [(ts, 3.0 if v > 10 else 0.0) for ts, v in series]
        return judge_aurora_serverless([d], {"db": series}, {"db": connections}, SIZES, policy, BUNDLED)

    # Weekly: 2 ACU (4 GiB) in its 6 busy hours (13 a month), 0.5 ACU in the others.
    [f] = judge(_hourly(_weekly))
    busy_month = 6 / 336 * H
    aurora = round((busy_month * 2 + (H - busy_month) * 0.5) * ACU_HOUR, 2)
    assert f.kind == "rds-aurora-serverless-candidate" and aurora == 46.15
    assert f.monthly_cost_usd == pytest.approx(DB_T3_MEDIUM * H - aurora, abs=0.01)
    assert f.numbers["connected_hours"] == 6 and f.numbers["acu_busy"] == 2 and f.numbers["cpu_median"] == 2.0
    assert "postgres db.t3.medium spiky: busy in 6 of 336 hours (1.8%" in f.reason
    assert "(Aurora PostgreSQL)" in f.reason and "at 2 ACU (the class's 4 GiB" in f.reason
    assert "13 busy hours a month and 0.5 ACU in the others $46.15/month" in f.reason
    assert "Assumes Aurora Standard and compares instance hours only" in f.reason
    # Idle all along (but connected): 0.5 ACU throughout.
    [idle] = judge(_hourly(lambda d, h: 2.0))
    assert "idle: busy in 0 of 336" in idle.reason
    assert idle.monthly_cost_usd == pytest.approx(DB_T3_MEDIUM * H - round(H * 0.5 * ACU_HOUR, 2), abs=0.01)
    # Multi-AZ: both sides twice (a reader of the same capacity).
    [multi] = judge(_hourly(_weekly), db_class="db.m5.large", multi_az=True)
    aurora_m = round((busy_month * 4 + (H - busy_month) * 0.5) * ACU_HOUR * 2, 2)
    assert multi.monthly_cost_usd == pytest.approx(DB_M5_LARGE * H * 2 - aurora_m, abs=0.01)
    assert "with a reader of the same capacity for Multi-AZ" in multi.reason
    # Traps: steadily busy; busy a third of the hours; spiky but dearer on Aurora (a db.r5.large's
    # 16 GiB is 8 ACU, a quarter of the hours); no Aurora edition; replicas, members, stopped.
    assert judge(_hourly(lambda d, h: 45.0)) == []
    assert judge(_hourly(lambda d, h: 60.0 if h < 8 else 2.0)) == []
    assert judge(_hourly(lambda d, h: 60.0 if h < 6 else 2.0), db_class="db.r5.large") == []
    assert judge(_hourly(_weekly), engine="mariadb") == [] and judge(_hourly(_weekly), engine="sqlserver-se") == []
    assert judge(_hourly(_weekly), replica_of="main") == [] and judge(_hourly(_weekly), cluster_id="c") == []
    assert judge(_hourly(_weekly), status="stopped") == [] and judge(_hourly(_weekly, days=10)) == []


def _put(cw, namespace, name, dims, points):
    data = [{"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
             "Timestamp": ts, "Value": value} for ts, value in points]
    for i in range(0, len(data), 500):
        cw.put_metric_data(Namespace=namespace, MetricData=data[i:i + 500])


@pytest.fixture
def planted(aws, request):
    """Instances, databases and clusters with 14 whole days of metrics, in us-east-1 unless the test
    names another region (indirect parametrization); -> (ids, creds block, now)."""
    region = getattr(request, "param", "us-east-1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, _ = window(now, 14)
    days = [start + timedelta(days=d) for d in range(14)]
    ec2 = boto3.client("ec2", region_name=region)
    cw = boto3.client("cloudwatch", region_name=region)
    rds = boto3.client("rds", region_name=region)
    redshift = boto3.client("redshift", region_name=region)
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]

    def instance(itype):
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=itype)["Instances"][0]["InstanceId"]

    ids = {role: instance(t) for role, t in (("idle", "t3.large"), ("night", "m5.large"), ("downsize", "m5.xlarge"),
                                             ("membound", "m5.xlarge"), ("nomem", "c5.xlarge"), ("kept", "t3.large"),
                                             ("allday", "m5.large"))}
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
        ec2_day("night", day, [(h, _night(n, h)) for h in range(24)], 1 * MB)
        ec2_day("allday", day, [(h, 50.0) for h in range(24)], 40 * MB)
        for role in ("downsize", "membound", "nomem"):
            # Five quiet days (5%), nine at 15% on average with a 20% peak.
            ec2_day(role, day, [(10, 5.0)] if n < 5 else [(10, 10.0), (14, 20.0)], 1 * MB)
        for role, used in (("downsize", 30.0), ("membound", 70.0)):
            _put(cw, "CWAgent", "mem_used_percent", {"InstanceId": ids[role], "InstanceType": "m5.xlarge"},
                 [(day + timedelta(hours=14), used)])

    def database(name, db_class, connections, multi_az=False):
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass=db_class, Engine="postgres",
                               AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                               MultiAZ=multi_az)
        _put(cw, "AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": name},
             [(day + timedelta(hours=12), c) for day, c in zip(days[7:], connections, strict=True)])

    def db_hours(name, cpu_of_hour, connections_of_hour):
        hours = [(n, days[n] + timedelta(hours=h), h) for n in range(14) for h in range(24)]
        dims = {"DBInstanceIdentifier": name}
        _put(cw, "AWS/RDS", "CPUUtilization", dims, [(ts, cpu_of_hour(n, h)) for n, ts, h in hours])
        _put(cw, "AWS/RDS", "DatabaseConnections", dims, [(ts, connections_of_hour(n, h)) for n, ts, h in hours])

    database("idle-db", "db.m5.large", [0.0] * 7)
    database("weekly-db", "db.t3.medium", [0.0] * 3 + [4.0] + [0.0] * 3)  # the weekly report's run
    _put(cw, "AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "weekly-db"},
         [(days[n] + timedelta(hours=h), _weekly(n, h)) for n in range(14) for h in range(24)])
    # The nightly load (02:00-03:59 at 70%), Multi-AZ; and a steadily busy database.
    database("nightly-db", "db.m5.large", [0.0] * 7, multi_az=True)  # connected only in its busy hours
    db_hours("nightly-db", lambda n, h: 70.0 if h in (2, 3) else 3.0, lambda n, h: 2.0 if h in (2, 3) else 0.0)
    database("steady-db", "db.m5.large", [5.0] * 7)
    db_hours("steady-db", lambda n, h: 45.0, lambda n, h: 5.0)

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
    AwsCredentials(region_name=region).save(creds)
    return ids, creds, now


# The findings by (kind, role) and their $/month, worked out by hand from the list prices (730 hours).
PLANTED = (("ec2-low-utilization", "idle"), ("ec2-low-utilization", "kept"), ("ec2-downsize", "downsize"),
           ("ec2-downsize", "nomem"), ("rds-no-connections", "idle-db"), ("redshift-low-cpu", "quiet-dw"),
           ("ec2-serverless-candidate", "night"), ("rds-aurora-serverless-candidate", "weekly-db"),
           ("rds-aurora-serverless-candidate", "nightly-db"))
# Serverless: busy 48 of 336 hours = 104.29 a month, as a 2 vCPU / 8 GiB task at us-east-1's
# 2 x 0.04048 + 8 x 0.004445 = $0.11652 an hour: $12.15. Weekly: busy 6 of 336 (13.04 a month) at
# 2 ACU, 716.96 hours at 0.5 ACU: 384.55 ACU-hours x $0.12 = $46.15. Nightly, Multi-AZ: busy 28 of
# 336 (60.83) at 4 ACU, 669.17 at 0.5: 577.92 ACU-hours x $0.12 x 2 = $138.70.
# Redshift: 4 x ra3.4xlarge paused 16 of 24 hours: 4 x 3.26 x 730 x 16/24.
EXPECTED = {
    "us-east-1": {
        "idle": 60.74, "kept": 60.74,  # t3.large 0.0832 x 730 = 60.736: stop
        "downsize": 70.08,  # m5.xlarge -> m5.large: (0.192 - 0.096) x 730
        "nomem": 62.05,  # c5.xlarge -> c5.large: (0.17 - 0.085) x 730
        "idle-db": 129.94,  # db.m5.large 0.178 x 730
        "quiet-dw": 6346.13,  # 9,519.20 x 2/3
        "night": 57.93,  # m5.large 0.096 x 730 = 70.08, less 12.15
        "weekly-db": 6.41,  # db.t3.medium 0.072 x 730 = 52.56, less 46.15
        "nightly-db": 121.18,  # db.m5.large 0.178 x 730 x 2 = 259.88, less 138.70
    },
    "ap-northeast-2": {
        "idle": 75.92, "kept": 75.92,  # Seoul's t3.large 0.104 x 730
        "downsize": 86.14,  # (0.236 - 0.118) x 730
        "nomem": 70.08,  # (0.192 - 0.096) x 730
        # No Seoul figure for db.m5.large, ra3.4xlarge, Fargate, Aurora Serverless v2 or db.t3.medium:
        # us-east-1's, marked estimated (and a serverless saving takes the instance price from there too).
        "idle-db": 129.94, "quiet-dw": 6346.13, "night": 57.93, "weekly-db": 6.41, "nightly-db": 121.18,
    },
}
ESTIMATED = {"us-east-1": set(), "ap-northeast-2": {"idle-db", "quiet-dw", "night", "weekly-db", "nightly-db"}}


@pytest.mark.parametrize(("planted", "region"), [pytest.param(r, r, id=r) for r in EXPECTED], indirect=["planted"])
def test_flow_finds_planted_positives_and_spares_the_traps(planted, region, store):
    from flows.compute_rightsizing import compute_rightsizing

    ids, creds, now = planted
    result = compute_rightsizing(aws_credentials=creds, store=store._block_document_name, regions=[region],
                                 now=now)
    got = {(f.kind, f.resource_id): f.monthly_cost_usd for f in result.findings}
    roles = {role: ids.get(role, role) for _, role in PLANTED}  # instances by id, the rest by name
    assert got == pytest.approx({(kind, roles[role]): EXPECTED[region][role] for kind, role in PLANTED}, abs=0.005)
    estimated = {f.resource_id for f in result.findings if "(estimated price)" in f.reason}
    assert estimated == {roles[role] for role in ESTIMATED[region]}
    # Traps: memory-bound; busy all day; a steadily busy database; a busy cluster. Busy at night on
    # 12 of 14 days and used weekly are not idle: serverless candidates only.
    flagged = {r for _, r in got}
    assert not flagged & {ids["membound"], ids["allday"], "steady-db", "busy-dw"}
    assert {k for k, r in got if r in (ids["night"], "weekly-db")} == {"ec2-serverless-candidate",
                                                                        "rds-aurora-serverless-candidate"}
    reason = {f.resource_id: f.reason for f in result.findings}
    assert "14 of 14 days at most 10% CPU and 5 MB network" in reason[ids["idle"]]
    assert "m5.xlarge -> m5.large: 5 of 14 days" in reason[ids["downsize"]]
    assert "peak CPU 20.0% -> 40%, peak memory 30.0% -> 60%" in reason[ids["downsize"]]
    assert "memory not measured" in reason[ids["nomem"]]
    assert "no connections on any of the last 7 days (DatabaseConnections max 0)" in reason["idle-db"]
    assert "at most 5.3% on all 14 days (peak hour 12%)" in reason["quiet-dw"]
    assert "busy UTC hours 09-16" in reason["quiet-dw"] and "resize to 2 nodes" in reason["quiet-dw"]
    assert "busy in 48 of 336 hours (14.3%; hourly average CPU above 10%, p95 90%, busy UTC hours 00-03)" in reason[ids["night"]]
    assert "postgres db.m5.large Multi-AZ spiky: busy in 28 of 336 hours (8.3%" in reason["nightly-db"]
    assert "connected in 28 hours" in reason["nightly-db"] and "for Multi-AZ $138.70/month" in reason["nightly-db"]
    assert result.details == [2]  # one GetMetricData call for EC2, Redshift and hourly RDS, one for RDS days
    offers = {o.item_id: o.eligible for o in result.offers}
    assert offers == {ids["idle"]: True, ids["kept"]: False, "idle-db": True}

    # Approval offers the eligible stops, nothing pre-selected; the person picks the idle instance.
    state = run_and_answer(compute_rightsizing, {"approved": [ids["idle"]]}, apply=True, aws_credentials=creds,
                           store=store._block_document_name, regions=[region], now=now)
    assert state.is_completed(), state
    ec2 = boto3.client("ec2", region_name=region)
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
              for i in r["Instances"]}
    assert states[ids["idle"]] in ("stopping", "stopped") and states[ids["kept"]] == "running"
    assert boto3.client("rds", region_name=region).describe_db_instances(
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
    assert read == {"ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "rds:DescribeDBInstances",
                    "redshift:DescribeClusters", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
                    "pricing:GetProducts"} | TARGETS
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
                    {ids["idle"], ids["kept"], ids["downsize"], ids["nomem"], "idle-db", "quiet-dw", ids["night"],
                     "weekly-db", "nightly-db"},
                    drop="redshift:DescribeClusters", approve=[ids["idle"], "idle-db"], withhold="rds:StopDBInstance",
                    withheld={"idle-db"}, state=state)
