"""graviton-advisor on moto: planted x86 resources -> exact Graviton findings and $/month."""

import io
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from rules.graviton import graviton_type
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

H = 730


def test_family_mapping():
    assert graviton_type("m5.large") == "m7g.large"
    assert graviton_type("t3a.micro") == "t4g.micro"
    assert graviton_type("db.r5.xlarge") == "db.r7g.xlarge"
    assert graviton_type("cache.t3.medium") == "cache.t4g.medium"
    assert graviton_type("m7g.large") is None and graviton_type("x2iedn.xlarge") is None


def _zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


@pytest.fixture
def planted_x86(aws):
    """x86 instances, databases, a cache cluster and a busy x86 function; -> (instance id by type, AMI, creds, now)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    ids = {t: ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=t)["Instances"][0]["InstanceId"]
           for t in ("m5.large", "t3.micro", "m7g.large")}
    rds = boto3.client("rds", region_name="us-east-1")
    for name, cls in (("orders-db", "db.m5.large"), ("events-db", "db.r5.large")):
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass=cls, Engine="postgres",
                               MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20)
    boto3.client("elasticache", region_name="us-east-1").create_cache_cluster(
        CacheClusterId="sessions", CacheNodeType="cache.t3.medium", Engine="redis", NumCacheNodes=1)
    role = boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda", region_name="us-east-1")
    for name, arch in (("ingest", "x86_64"), ("already-arm", "arm64")):
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                            Code={"ZipFile": _zip()}, MemorySize=2048, Architectures=[arch])
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    # 10,000 s of 2 GB functions a day for 14 days -> 600,000 GB-s per 30-day month.
    cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Duration", "Dimensions": [{"Name": "FunctionName", "Value": "ingest"}],
         "Timestamp": now - timedelta(days=d, hours=1), "Value": 10_000_000, "Unit": "Milliseconds"}
        for d in range(14)])
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return ids, image, creds, now


def test_flow_finds_x86_resources_with_price_delta(planted_x86, store):
    from flows.graviton_advisor import graviton_advisor

    ids, image, creds, now = planted_x86
    findings = graviton_advisor(aws_credentials=creds, store=store._block_document_name,
                                regions=["us-east-1"], now=now).findings
    got = {f.resource_id: f for f in findings}
    assert set(got) == {ids["m5.large"], ids["t3.micro"], "orders-db", "events-db", "sessions", "ingest"}
    expected = {
        ids["m5.large"]: (0.096 - 0.0816) * H, ids["t3.micro"]: (0.0104 - 0.0084) * H,
        "orders-db": (0.178 - 0.168) * H, "events-db": (0.25 - 0.239) * H,
        "sessions": (0.068 - 0.065) * H, "ingest": 600_000 * (0.0000166667 - 0.0000133334),
    }
    for rid, saving in expected.items():
        assert got[rid].monthly_cost_usd == pytest.approx(saving, rel=0.01), rid
    assert got[ids["m5.large"]].numbers["target"] == "m7g.large"
    assert f"arm64 build of AMI {image}" in got[ids["m5.large"]].reason
    # moto's DescribeOrderableDBInstanceOptions knows no postgres classes: the note says so.
    assert "not listed as orderable for postgres" in got["orders-db"].reason
    assert "Graviton nodes need redis 5.0.6" in got["sessions"].reason
    assert got["ingest"].numbers["target"] == "arm64" and "600,000 GB-s" in got["ingest"].reason
    assert store.findings_of("graviton-advisor", status="open").__len__() == 6


def test_advice_only_needs_read_permissions():
    import flows.graviton_advisor as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    assert flow_actions(module) == flow_actions(module, read_only=True) == {
        "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "rds:DescribeDBInstances",
        "rds:DescribeOrderableDBInstanceOptions", "elasticache:DescribeCacheClusters", "lambda:ListFunctions",
        "cloudwatch:GetMetricData", "pricing:GetProducts"} | TARGETS


@scenario_for("graviton-advisor")
def least_privilege_scenario(planted_x86):
    from flows.graviton_advisor import graviton_advisor

    ids, _, creds, now = planted_x86
    return Scenario(graviton_advisor, creds, dict(regions=["us-east-1"], now=now),
                    {ids["m5.large"], ids["t3.micro"], "orders-db", "events-db", "sessions", "ingest"},
                    drop="elasticache:DescribeCacheClusters")
