"""Seed a moto server with a realistic, messy AWS account for `make demo`.

Everything goes through the public AWS API (boto3 against the moto endpoint) except ages:
AWS has no API to make a resource old, so creation times are backdated in moto's backend,
which is only possible because the demo runs moto in its own process.

`scale` multiplies the waste (1 = a handful of each kind, for tests; the demo uses 3).
The returned `Seeded` lists what was planted, so the demo can say what there was to find.
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:  # moto, which it needs, is a development dependency
    from deployments.local_reservations import Planted

REGIONS = ("us-east-1", "eu-west-1")
KEEP_TAG = {"Key": "dataplatform-ops:keep", "Value": "true"}
SCHEDULE_TAG_KEY = "dataplatform-ops:schedule"


@dataclass
class Seeded:
    """What was planted, by kind: resource ids (or names)."""

    endpoint_url: str
    regions: tuple[str, ...] = REGIONS
    planted: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, *ids: str) -> None:
        self.planted.setdefault(kind, []).extend(ids)

    def summary(self) -> str:
        return ", ".join(f"{len(ids)} {kind}" for kind, ids in self.planted.items())


def off_hours_schedule(now: datetime) -> str:
    """A parking schedule whose business hours do not include `now` (so dev boxes get parked).

    The window is two hours long and starts three hours from now, every day, in UTC.
    """
    start = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=2)
    return f"daily {start:%H:%M}-{end:%H:%M} UTC"


def _tags(**tags: str) -> list[dict[str, str]]:
    return [{"Key": k.replace("_", ":"), "Value": v} for k, v in tags.items()]


def _spec(resource: str, tags: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource, "Tags": tags}]


class _Account:
    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGIONS[0]
        )

    def client(self, service: str, region: str = REGIONS[0]) -> Any:
        return self.session.client(service, region_name=region, endpoint_url=self.endpoint_url)


def _backdate(now: datetime, days: float) -> datetime:
    """A naive UTC time, as moto keeps them."""
    return (now - timedelta(days=days)).astimezone(timezone.utc).replace(tzinfo=None)


def _moto_backends() -> tuple[Any, Any, str]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.s3.models import s3_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID], s3_backends[DEFAULT_ACCOUNT_ID]["global"], DEFAULT_ACCOUNT_ID


def seed_ec2(aws: _Account, seeded: Seeded, region: str, scale: int, now: datetime) -> None:
    ec2 = aws.client("ec2", region)
    ec2_backend = _moto_backends()[0][region]
    az = f"{region}a"
    image = ec2.register_image(Name="al2023-x86_64", Architecture="x86_64", RootDeviceName="/dev/xvda")["ImageId"]

    def run(instance_type: str, tags: list[dict[str, str]]) -> str:
        return ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type,
            Placement={"AvailabilityZone": az}, TagSpecifications=_spec("instance", tags),
        )["Instances"][0]["InstanceId"]

    # Production x86 instances: Graviton candidates; each gets an attached gp2 data volume.
    for i in range(scale):
        for itype in ("m5.xlarge", "r5.large"):
            name = f"etl-{itype.split('.')[0]}-{i}"
            instance = run(itype, _tags(Name=name, env="prod", team="data"))
            seeded.add("x86 instances", instance)
            volume = ec2.create_volume(
                AvailabilityZone=az, Size=500, VolumeType="gp2",
                TagSpecifications=_spec("volume", _tags(Name=f"{name}-data")),
            )["VolumeId"]
            ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
            seeded.add("gp2 volumes", volume)
    # An instance already on Graviton, and one with an opt-out tag: neither is a finding.
    run("m7g.large", _tags(Name="api-arm", env="prod"))
    run("m5.large", [*_tags(Name="licensed-x86", env="prod"), KEEP_TAG])

    # Dev instances that run outside their business hours: parking candidates.
    for i in range(scale):
        instance = run("t3.large", [*_tags(Name=f"dev-notebook-{i}", env="dev"),
                                    {"Key": SCHEDULE_TAG_KEY, "Value": off_hours_schedule(now)}])
        seeded.add("dev instances off hours", instance)
    # A schedule tag nobody can parse: reported, never guessed at.
    seeded.add("bad schedule tags", run("t3.medium", [*_tags(Name="dev-scratch", env="dev"),
                                                      {"Key": SCHEDULE_TAG_KEY, "Value": "weekdays 8-20 Seoul"}]))

    # Elastic IPs: idle ones cost $0.005/h each; one is in use, one is kept on purpose.
    for _ in range(2 * scale):
        seeded.add("idle EIPs", ec2.allocate_address(Domain="vpc")["AllocationId"])
    in_use = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=in_use, InstanceId=run("t3.small", _tags(Name="bastion")))
    ec2.allocate_address(Domain="vpc", TagSpecifications=_spec("elastic-ip", [KEEP_TAG]))

    # Unattached volumes, left behind months ago; a kept one and a fresh one.
    for i in range(scale):
        for vtype, size, iops in (("gp2", 200, None), ("io1", 400, 8000), ("gp3", 1000, None)):
            kwargs = {"Iops": iops} if iops else {}
            volume = ec2.create_volume(
                AvailabilityZone=az, Size=size, VolumeType=vtype, **kwargs,
                TagSpecifications=_spec("volume", _tags(Name=f"old-{vtype}-{i}")),
            )["VolumeId"]
            ec2_backend.volumes[volume].create_time = _backdate(now, 60 + 10 * i)
            seeded.add("idle volumes", volume)
    ec2.create_volume(AvailabilityZone=az, Size=50, VolumeType="gp3",
                      TagSpecifications=_spec("volume", [KEEP_TAG]))

    # Orphaned snapshots: their volume is gone and no AMI uses them.
    for i in range(scale):
        source = ec2.create_volume(AvailabilityZone=az, Size=300, VolumeType="gp2")["VolumeId"]
        snapshot = ec2.create_snapshot(VolumeId=source, Description=f"before migration {i}")["SnapshotId"]
        ec2.delete_volume(VolumeId=source)
        ec2_backend.snapshots[snapshot].start_time = _backdate(now, 200 + 30 * i)
        seeded.add("orphaned snapshots", snapshot)


def seed_rds(aws: _Account, seeded: Seeded, scale: int, now: datetime) -> None:
    rds = aws.client("rds")
    for i in range(scale):
        name = f"dev-analytics-{i}"
        rds.create_db_instance(
            DBInstanceIdentifier=name, DBInstanceClass="db.m5.large", Engine="postgres", EngineVersion="16.3",
            AllocatedStorage=100, MasterUsername="dev", MasterUserPassword="dev-password-1",
            Tags=[*_tags(env="dev"), {"Key": SCHEDULE_TAG_KEY, "Value": off_hours_schedule(now)}],
        )
        seeded.add("dev databases off hours", name)


def seed_s3(aws: _Account, seeded: Seeded, scale: int, now: datetime) -> None:
    s3, cloudwatch = aws.client("s3"), aws.client("cloudwatch")
    buckets = _moto_backends()[1]
    # Raw events nobody read for a year: old objects and a big STANDARD bucket.
    s3.create_bucket(Bucket="acme-raw-events")
    for i in range(5 * scale):
        key = f"events/2025/{i:03d}.json.gz"
        s3.put_object(Bucket="acme-raw-events", Key=key, Body=b"x" * 200_000)
        buckets.buckets["acme-raw-events"].keys[key].last_modified = _backdate(now, 400 + i)
        seeded.add("old S3 objects", f"s3://acme-raw-events/{key}")
    s3.put_object(Bucket="acme-raw-events", Key="events/today.json.gz", Body=b"x" * 1000)
    # Logs already expire through a lifecycle rule: old, but not a finding.
    s3.create_bucket(Bucket="acme-access-logs")
    s3.put_bucket_lifecycle_configuration(
        Bucket="acme-access-logs",
        LifecycleConfiguration={"Rules": [{"ID": "expire-logs", "Status": "Enabled",
                                           "Filter": {"Prefix": ""}, "Expiration": {"Days": 90}}]},
    )
    for i in range(3):
        key = f"logs/{i}.log"
        s3.put_object(Bucket="acme-access-logs", Key=key, Body=b"GET /")
        buckets.buckets["acme-access-logs"].keys[key].last_modified = _backdate(now, 120)
    # S3 storage metrics (daily, as AWS publishes them): Intelligent-Tiering candidates.
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for bucket, tib, objects in (("acme-raw-events", 12 * scale, 4_000_000), ("acme-access-logs", 0.2, 90_000)):
        for days_ago in range(1, 4):
            dims = [{"Name": "BucketName", "Value": bucket}]
            cloudwatch.put_metric_data(Namespace="AWS/S3", MetricData=[
                {"MetricName": "BucketSizeBytes", "Timestamp": day - timedelta(days=days_ago),
                 "Value": tib * 2**40, "Unit": "Bytes",
                 "Dimensions": [*dims, {"Name": "StorageType", "Value": "StandardStorage"}]},
                {"MetricName": "NumberOfObjects", "Timestamp": day - timedelta(days=days_ago),
                 "Value": objects, "Unit": "Count",
                 "Dimensions": [*dims, {"Name": "StorageType", "Value": "AllStorageTypes"}]},
            ])
    seeded.add("large STANDARD buckets", "acme-raw-events")


def _datapoints(now: datetime, minutes: int, step: int = 5) -> list[datetime]:
    return [now - timedelta(minutes=m) for m in range(step, minutes + 1, step)]


def seed_lambda(aws: _Account, seeded: Seeded, scale: int, now: datetime) -> None:
    iam, lam, cloudwatch = aws.client("iam"), aws.client("lambda"), aws.client("cloudwatch")
    role = iam.create_role(
        RoleName="lambda-exec",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    # name -> (timeout s, memory MB, per-5-minute Invocations, Errors, Throttles, Duration max ms)
    profiles = {
        "orders-ingest": (30, 512, 200, 0, 0, 900),         # healthy
        "payments-webhook": (30, 256, 200, 30, 0, 1200),    # 15% errors
        "clickstream-loader": (60, 1024, 300, 0, 25, 5000),  # throttled
        "nightly-export": (60, 2048, 4, 2, 0, 60000),       # timing out
        "legacy-cron": (10, 128, 0, 0, 0, 0),               # idle
    }
    for i in range(scale):
        for base, (timeout, memory, invocations, errors, throttles, duration) in profiles.items():
            name = base if i == 0 else f"{base}-{i}"
            lam.create_function(
                FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                Code={"ZipFile": code.getvalue()}, Timeout=timeout, MemorySize=memory,
                Architectures=["x86_64"],
            )
            if errors and duration < timeout * 1000:
                seeded.add("erroring Lambdas", name)
            if throttles:
                seeded.add("throttled Lambdas", name)
            if duration >= timeout * 1000:
                seeded.add("timing-out Lambdas", name)
            if not invocations:
                continue
            data = []
            for ts in _datapoints(now, 30):
                dims = [{"Name": "FunctionName", "Value": name}]
                data += [
                    {"MetricName": "Invocations", "Timestamp": ts, "Value": invocations, "Unit": "Count", "Dimensions": dims},
                    {"MetricName": "Errors", "Timestamp": ts, "Value": errors, "Unit": "Count", "Dimensions": dims},
                    {"MetricName": "Throttles", "Timestamp": ts, "Value": throttles, "Unit": "Count", "Dimensions": dims},
                    {"MetricName": "Duration", "Timestamp": ts, "Unit": "Milliseconds", "Dimensions": dims,
                     "StatisticValues": {"SampleCount": max(invocations, 1), "Sum": duration * invocations / 2,
                                         "Minimum": duration / 10, "Maximum": duration}},
                ]
            for start in range(0, len(data), 20):
                cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data[start:start + 20])


def seed_sqs(aws: _Account, seeded: Seeded, scale: int, now: datetime) -> None:
    sqs, cloudwatch = aws.client("sqs"), aws.client("cloudwatch")
    for i in range(scale):
        suffix = "" if i == 0 else f"-{i}"
        dlq_url = sqs.create_queue(QueueName=f"orders-dlq{suffix}")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.create_queue(
            QueueName=f"orders{suffix}",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})},
        )
        for n in range(7):
            sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"order_id": 1000 + n, "error": "schema mismatch"}))
        # The oldest failed order has waited two days (as CloudWatch reports it for the queue).
        cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=[
            {"MetricName": "ApproximateAgeOfOldestMessage", "Timestamp": ts, "Value": 2 * 86400 - 300 * m,
             "Unit": "Seconds", "Dimensions": [{"Name": "QueueName", "Value": f"orders-dlq{suffix}"}]}
            for m, ts in enumerate(_datapoints(now, 15))])
        seeded.add("dead-letter queues with messages", f"orders-dlq{suffix}")
    # A healthy queue pair with an empty DLQ: not a finding.
    empty = sqs.create_queue(QueueName="invoices-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=empty, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.create_queue(QueueName="invoices", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5})})


def seed_redshift(aws: _Account, seeded: Seeded, now: datetime) -> None:
    redshift, cloudwatch = aws.client("redshift"), aws.client("cloudwatch")
    # cluster -> CPU %, disk used %, connections: one saturated, one fine.
    clusters = {"analytics": (96.0, 91.0, 310), "reporting": (35.0, 40.0, 25)}
    for name, (cpu, disk, connections) in clusters.items():
        redshift.create_cluster(
            ClusterIdentifier=name, NodeType="ra3.xlplus", NumberOfNodes=2, MasterUsername="admin",
            MasterUserPassword="Admin-password-1", ClusterType="multi-node",
        )
        data = []
        for ts in _datapoints(now, 60):
            dims = [{"Name": "ClusterIdentifier", "Value": name}]
            data += [
                {"MetricName": "CPUUtilization", "Timestamp": ts, "Value": cpu, "Unit": "Percent", "Dimensions": dims},
                {"MetricName": "PercentageDiskSpaceUsed", "Timestamp": ts, "Value": disk, "Unit": "Percent", "Dimensions": dims},
                {"MetricName": "DatabaseConnections", "Timestamp": ts, "Value": connections, "Unit": "Count", "Dimensions": dims},
                {"MetricName": "HealthStatus", "Timestamp": ts, "Value": 1, "Unit": "Count", "Dimensions": dims},
                {"MetricName": "MaintenanceMode", "Timestamp": ts, "Value": 0, "Unit": "Count", "Dimensions": dims},
            ]
        for start in range(0, len(data), 20):
            cloudwatch.put_metric_data(Namespace="AWS/Redshift", MetricData=data[start:start + 20])
    seeded.add("saturated Redshift clusters", "analytics")


def seed_waste(aws: _Account, seeded: Seeded, region: str, now: datetime) -> None:
    """waste-checks: a NAT gateway that carries nothing, a load balancer with no targets and a
    log group that keeps 40 GiB forever, all a month old."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.elbv2.models import elbv2_backends
    from moto.logs.models import logs_backends

    ec2, elbv2, logs = aws.client("ec2", region), aws.client("elbv2", region), aws.client("logs", region)
    ec2_backend = _moto_backends()[0][region]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{region}{az}")[
        "Subnet"]["SubnetId"] for i, az in enumerate("ab")]
    nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=ec2.allocate_address(Domain="vpc")[
        "AllocationId"])["NatGateway"]["NatGatewayId"]
    ec2_backend.nat_gateways[nat]._created_at = _backdate(now, 30)
    seeded.add("idle NAT gateways", nat)
    arn = elbv2.create_load_balancer(Name="old-api", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    elbv2_backends[DEFAULT_ACCOUNT_ID][region].load_balancers[arn].created_time = (
        _backdate(now, 30).isoformat(timespec="milliseconds") + "Z")
    seeded.add("load balancers without targets", "app/old-api")
    group = "/pipelines/ingest"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    # moto counts only bytes really put: the stored size is set in its backend.
    [stream] = logs_backends[DEFAULT_ACCOUNT_ID][region].groups[group].streams.values()
    stream.stored_bytes = 40 * 1024**3
    seeded.add("log groups without retention", group)


def seed_reservations(planted: Planted, seeded: Seeded, region: str, now: datetime) -> None:
    """waste-checks: a Redshift reservation and a Savings Plan that end within the month, one that
    does not (answered by `deployments/local_reservations.py`: moto lacks these listings)."""
    from deployments.local_reservations import reserved_node, savings_plan

    planted.reserved_nodes[region] = [reserved_node(now, "analytics-ra3-2025", 12),
                                      reserved_node(now, "analytics-ra3-2026", 300)]
    planted.savings_plans[:] = [savings_plan(now, "compute-2023", 20, commitment="1.2")]
    seeded.add("reservations ending this month", "analytics-ra3-2025", "compute-2023")


def seed_account(endpoint_url: str, scale: int = 3, now: datetime | None = None,
                 reservations: Planted | None = None) -> Seeded:
    """Plant the demo account in the moto server at `endpoint_url` (running in this process);
    `reservations`: where the reservation listings moto lacks are answered from, if anywhere."""
    now = now or datetime.now(timezone.utc)
    aws = _Account(endpoint_url)
    seeded = Seeded(endpoint_url)
    for region in REGIONS:
        seed_ec2(aws, seeded, region, scale, now)
    seed_waste(aws, seeded, REGIONS[0], now)
    if reservations is not None:
        seed_reservations(reservations, seeded, REGIONS[0], now)
    seed_rds(aws, seeded, scale, now)
    seed_s3(aws, seeded, scale, now)
    seed_lambda(aws, seeded, scale, now)
    seed_sqs(aws, seeded, scale, now)
    seed_redshift(aws, seeded, now)
    return seeded


# --- PostgreSQL: a warehouse in trouble, and a pipeline whose target fell behind -----------


def seed_pipeline(app: str, analytics: str, now: datetime) -> dict[str, int]:
    """`public.orders` in the app database and its copy `raw.orders` in the analytics one:
    the copy misses the rows of one day and stopped loading three hours ago."""
    import psycopg

    days = 7
    rows = [(i, (i * 37) % 9000, now - timedelta(days=i % days, minutes=30 + i % 50)) for i in range(1, 1401)]
    missing_day = (now - timedelta(days=2)).date()
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("create table public.orders (id int primary key, status text, amount_cents int, "
                     "created_at timestamptz not null, updated_at timestamptz not null)")
        with conn.cursor().copy("copy public.orders from stdin") as copy:
            for i, cents, created in rows:
                copy.write_row((i, "paid", cents, created, created))
    copied = [r for r in rows if r[2].date() != missing_day]
    with psycopg.connect(analytics, autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.orders (id int primary key, status text, amount_cents int, "
                     "created_at timestamptz not null, loaded_at timestamptz not null)")
        with conn.cursor().copy("copy raw.orders from stdin") as copy:
            for i, cents, created in copied:
                copy.write_row((i, "paid", cents, created, min(created, now - timedelta(hours=3))))
    return {"source_rows": len(rows), "target_rows": len(copied)}


REDSHIFT_VIEWS_SQL = Path(__file__).with_name("redshift_views.sql")


def seed_redshift_views(dsn: str) -> None:
    """Redshift's system views on PostgreSQL (the warehouse tests' fixture schema, which reads
    live sessions and locks), with 7 queries queued behind 5 running in the `etl` WLM queue."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(REDSHIFT_VIEWS_SQL.read_text())
        for i in range(12):
            state, queued_us = ("QueuedWaiting", (100 + i * 50) * 1_000_000) if i < 7 else ("Running", 0)
            conn.execute("insert into stv_wlm_query_state values (%s, %s, %s, 6, 1, getdate(), %s, %s, 0, 'normal')",
                         (1000 + i, i, 500 + i, state, queued_us))


@contextmanager
def warehouse_trouble(dsn: str) -> Iterator[None]:
    """Real sessions on the warehouse database while the demo runs: a query that keeps running,
    and a transaction holding a table lock that another query waits on. Ended on exit."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table if not exists public.daily_revenue (day date, revenue numeric)")
    statements = [
        ["select pg_sleep(3600) /* rebuild of the monthly revenue report */"],
        ["begin", "lock table public.daily_revenue in access exclusive mode", "select pg_sleep(3600)"],
        ["select count(*) from public.daily_revenue"],  # waits for the lock above
    ]
    threads = []

    def run(sqls: list[str]) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, application_name="demo-trouble") as conn:
                for sql in sqls:
                    conn.execute(sql)
        except psycopg.Error:
            pass  # ended by the demo on exit

    for sqls in statements:
        thread = threading.Thread(target=run, args=(sqls,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(0.5)  # the lock is taken before its waiter arrives
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                         "where application_name = 'demo-trouble'")
        for thread in threads:
            thread.join(10)


# --- BigQuery: job history in the emulator ------------------------------------------------

BQ_PROJECTS = ("acme-analytics", "acme-etl")
BQ_JOBS_TABLE = "{project}.jobs_history.jobs_{region}"  # the JOBS view's columns, see local_bigquery
TIB = 2**40


def seed_bigquery(endpoint: str, now: datetime, scale: int = 3) -> dict[str, int]:
    """Three days of query history per project, and a few expensive queries in the last hour."""
    from deployments.local_bigquery import (
        JOBS_SCHEMA,
        create_table,
        emulator_client,
        insert_rows,
        job_row,
    )

    users = ("analyst@acme.test", "data-scientist@acme.test", "etl@acme-etl.iam.gserviceaccount.com")
    expensive = 0
    for p, project in enumerate(BQ_PROJECTS):
        rows = []
        for day in range(1, 4):
            for n in range(4 * scale):
                user = users[(n + p) % len(users)]
                created = now - timedelta(days=day, hours=n % 20, minutes=7 * n % 60)
                rows.append(job_row(project, f"hist-{day}-{n}", user, created, int((0.05 + 0.15 * (n % 5)) * TIB),
                                    query=f"SELECT region, sum(amount) FROM sales.orders WHERE day = '{created:%Y-%m-%d}' GROUP BY 1"))
        # In the last hour: full scans that cost more than $5, one cached, one cheap.
        for n, tib in enumerate((2.5, 6.0)[: 1 + p]):
            rows.append(job_row(project, f"scan-{n}", users[n], now - timedelta(minutes=20 + 10 * n), int(tib * TIB),
                                query="SELECT * FROM events.clickstream WHERE user_agent LIKE '%bot%'", seconds=240))
            expensive += 1
        rows.append(job_row(project, "cached-0", users[0], now - timedelta(minutes=15), 0, cached=True))
        rows.append(job_row(project, "small-0", users[1], now - timedelta(minutes=12), int(0.01 * TIB)))
        client = emulator_client(endpoint, project)
        table = BQ_JOBS_TABLE.format(project=project, region="us")
        create_table(client, table, JOBS_SCHEMA, partition_field="creation_time")
        insert_rows(client, table, rows)
    return {"expensive queries": expensive}


SNOWFLAKE_ACCOUNT = "acme-prod"


def seed_snowflake(endpoint: str, now: datetime) -> str:
    """One Snowflake account on the fakesnow server, pinned to `now` so every demo run finds the same:
    yesterday's usage (deployments/local_snowflake.py `seed_usage`: attributed ETL queries, an
    estimated BI day, cloud services above 10 %, an X-Large query worth announcing); warehouses
    (REPORTING_WH never suspends and has no resource monitor); a second ACCOUNTADMIN signing in
    with a password and no MFA."""
    from deployments.local_snowflake import (
        create_account_usage,
        insert_rows,
        seed_connection,
        seed_usage,
    )

    day = (now - timedelta(days=1)).date()
    created = now - timedelta(days=400)

    def warehouse(name: str, size: str, suspend: int | None, monitor: str | None) -> dict[str, Any]:
        return {"name": name, "state": "SUSPENDED", "type": "STANDARD", "size": size, "min_cluster_count": 1,
                "max_cluster_count": 1, "started_clusters": 0, "running": 0, "queued": 0, "is_default": "N",
                "is_current": "N", "auto_suspend": suspend, "auto_resume": "true", "available": "",
                "provisioning": "", "quiescing": "", "other": "", "created_on": created, "resumed_on": created,
                "updated_on": created, "owner": "SYSADMIN", "comment": "", "enable_query_acceleration": "false",
                "query_acceleration_max_scale_factor": 8, "resource_monitor": monitor or "null",
                "scaling_policy": "STANDARD"}

    def monitor(name: str, level: str) -> dict[str, Any]:
        return {"name": name, "credit_quota": 1000, "used_credits": 10, "remaining_credits": 990, "level": level,
                "frequency": "MONTHLY", "start_time": created, "end_time": None, "notify_at": "90%",
                "suspend_at": "100%", "suspend_immediately_at": None, "created_on": created,
                "owner": "ACCOUNTADMIN", "comment": "", "notify_users": ""}

    def user(name: str, mfa: bool) -> dict[str, Any]:
        return {"USER_ID": len(name), "NAME": name, "CREATED_ON": created, "DELETED_ON": None, "LOGIN_NAME": name,
                "DISPLAY_NAME": name, "EMAIL": f"{name.lower()}@acme.test", "MUST_CHANGE_PASSWORD": False,
                "HAS_PASSWORD": True, "COMMENT": "", "DISABLED": "false", "SNOWFLAKE_LOCK": "false",
                "DEFAULT_WAREHOUSE": "BI_WH", "DEFAULT_ROLE": "ANALYST", "EXT_AUTHN_DUO": False,
                "EXT_AUTHN_UID": None, "HAS_MFA": mfa, "LAST_SUCCESS_LOGIN": now - timedelta(days=1),
                "HAS_RSA_PUBLIC_KEY": False, "PASSWORD_LAST_SET_TIME": created, "OWNER": "USERADMIN",
                "TYPE": "PERSON"}

    with seed_connection(endpoint) as conn:
        create_account_usage(conn)
        seed_usage(conn, day)
        insert_rows(conn, "STAND_IN.PUBLIC.SHOW_WAREHOUSES", [
            warehouse("ETL_WH", "Medium", 60, "ETL_MON"), warehouse("BI_WH", "X-Small", 60, "BI_MON"),
            warehouse("REPORTING_WH", "X-Large", None, None)])
        insert_rows(conn, "STAND_IN.PUBLIC.SHOW_RESOURCE_MONITORS", [
            monitor("ETL_MON", "WAREHOUSE"), monitor("BI_MON", "WAREHOUSE"), monitor("ACCOUNT_MON", "ACCOUNT")])
        insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.GRANTS_TO_USERS", [
            {"CREATED_ON": created, "DELETED_ON": None, "ROLE": "ACCOUNTADMIN", "GRANTED_TO": "USER",
             "GRANTEE_NAME": name, "GRANTED_BY": "ACCOUNTADMIN"} for name in ("ADMIN", "MALLORY")])
        insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.USERS", [user("ADMIN", mfa=True), user("MALLORY", mfa=False)])
    return (f"account {SNOWFLAKE_ACCOUNT}: usage of {day} on ETL_WH, BI_WH and REPORTING_WH (no auto-suspend, "
            "no resource monitor); MALLORY holds ACCOUNTADMIN with a password and no MFA")
