"""waste-checks on moto under the real Prefect server: the catalogue, coverage per check, the approval path.

Every check has planted positives and look-alikes that are not waste (a NAT gateway with
traffic, a load balancer with a healthy target, a log group with a retention, an opted-out
resource, ...). Prices are the bundled us-east-1 list prices, worked out by hand below.

moto gaps bridged here, and only here:
- CloudWatch Logs counts the bytes of events actually put; a log group worth more than the
  report's $1/month floor would need 34 GiB of events, so the test sets one stream's byte count
  in moto's backend (`_store_bytes`). The listing, judgement and action still go through the API.
- NAT gateways publish no metrics in moto: traffic is planted with PutMetricData.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.logs.models import logs_backends
from prefect.flow_runs import resume_flow_run
from prefect_aws import AwsCredentials

import flows.waste_checks as waste_module
from deployments.iam import flow_actions
from flows.waste_checks import JOB, waste_checks
from rules.waste import WastePolicy
from tests.approvals import paused_run_id, run_and_answer
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    iam_user_with,
    plain_creds,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

REGION = "us-east-1"
SCOPE = f"{DEFAULT_ACCOUNT_ID}/{REGION}"
KEEP = {"Key": "dataplatform-ops:keep", "Value": "yes"}
GIB = 1024**3
# Resources are created now (real time); the checks run ten days later, so they are not "young".
NOW = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=10)

# us-east-1 list prices x 730 hours: NAT $0.045/h, ALB and NLB $0.0225/h, CLB $0.025/h;
# CloudWatch Logs storage $0.03 per GB-month.
NAT_MONTH, ALB_MONTH, CLB_MONTH = 32.85, 16.425, 18.25



def _tags(resource_type: str, *tags: dict) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": list(tags)}]


def _store_bytes(group: str, n_bytes: int) -> None:
    """Set the stored bytes of a log group in moto's backend (see the module docstring)."""
    [stream] = logs_backends[DEFAULT_ACCOUNT_ID][REGION].groups[group].streams.values()
    stream.stored_bytes = n_bytes


def plant_network_and_logs() -> dict[str, float]:
    """Waste and look-alikes in us-east-1; -> the waste's resource id -> $/month."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]
               ["SubnetId"] for i, az in enumerate("ab")]
    waste: dict[str, float] = {}

    def nat(*tags: dict) -> str:
        eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
        return ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=eip,
                                      TagSpecifications=_tags("natgateway", *tags) if tags else [])[
            "NatGateway"]["NatGatewayId"]

    waste[nat()] = NAT_MONTH
    busy = nat()
    nat(KEEP)
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/NATGateway", MetricData=[
        {"MetricName": "BytesOutToDestination", "Dimensions": [{"Name": "NatGatewayId", "Value": busy}],
         "Timestamp": NOW - timedelta(days=2), "Value": 5_000_000}])
    gone = nat()
    ec2.delete_nat_gateway(NatGatewayId=gone)

    elbv2, elb = boto3.client("elbv2", region_name=REGION), boto3.client("elb", region_name=REGION)
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1")["ImageId"]
    running, stopped = (ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"][0]["InstanceId"] for _ in range(2))

    def lb(name: str, kind: str, targets: list[str], *tags: dict) -> None:
        arn = elbv2.create_load_balancer(Name=name, Subnets=subnets, Type=kind, **({"Tags": list(tags)} if tags else {}))[
            "LoadBalancers"][0]["LoadBalancerArn"]
        if targets:
            protocol = "HTTP" if kind == "application" else "TCP"
            tg = elbv2.create_target_group(Name=f"{name}-tg", Protocol=protocol, Port=80, VpcId=vpc)[
                "TargetGroups"][0]["TargetGroupArn"]
            elbv2.create_listener(LoadBalancerArn=arn, Protocol=protocol, Port=80,
                                  DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
            elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": t} for t in targets])

    lb("empty-alb", "application", [])
    lb("stopped-nlb", "network", [stopped])
    lb("serving-alb", "application", [running, stopped])
    lb("kept-alb", "application", [], KEEP)
    ec2.stop_instances(InstanceIds=[stopped])  # registered while running; now its targets are `unused`
    waste |= {"app/empty-alb": ALB_MONTH, "net/stopped-nlb": ALB_MONTH}
    listeners = [{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 80}]
    for name in ("empty-clb", "serving-clb"):
        elb.create_load_balancer(LoadBalancerName=name, Listeners=listeners, AvailabilityZones=[f"{REGION}a"])
    elb.register_instances_with_load_balancer(LoadBalancerName="serving-clb", Instances=[{"InstanceId": running}])
    waste["classic/empty-clb"] = CLB_MONTH

    logs = boto3.client("logs", region_name=REGION)
    for name, tags in (("/pipelines/ingest", {}), ("/pipelines/kept", {KEEP["Key"]: "yes"}),
                       ("/pipelines/retained", {}), ("/pipelines/small", {})):
        logs.create_log_group(logGroupName=name, **({"tags": tags} if tags else {}))
        logs.create_log_stream(logGroupName=name, logStreamName="s")
        logs.put_log_events(logGroupName=name, logStreamName="s", logEvents=[
            {"timestamp": int(datetime.now().timestamp() * 1000), "message": "x" * 1000}])
    logs.put_retention_policy(logGroupName="/pipelines/retained", retentionInDays=14)
    for name in ("/pipelines/ingest", "/pipelines/kept", "/pipelines/retained"):
        _store_bytes(name, 50 * GIB)
    # 50 GiB x $0.03; "/pipelines/small" holds 1,000 bytes: under $1.
    waste[f"arn:aws:logs:{REGION}:{DEFAULT_ACCOUNT_ID}:log-group:/pipelines/ingest"] = 1.5
    return waste


@pytest.fixture
def creds(aws) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name=REGION).save(name)
    return name


def test_checks_find_exactly_the_planted_waste_at_list_price(creds, store):
    waste = plant_network_and_logs()
    result = waste_checks(regions=[REGION], aws_credentials=creds, store=store._block_document_name, now=NOW)
    assert result.errors == {}
    assert {f.resource_id: f.monthly_cost_usd for f in result.findings} == waste
    assert result.monthly_usd == pytest.approx(NAT_MONTH + 2 * ALB_MONTH + CLB_MONTH + 1.5)
    assert {f.kind for f in result.findings} == {"idle-nat-gateway", "unused-load-balancer",
                                                 "log-group-without-retention"}
    assert [(o.item_id, o.action) for o in result.offers] == [
        (f"arn:aws:logs:{REGION}:{DEFAULT_ACCOUNT_ID}:log-group:/pipelines/ingest", "set-log-retention")]
    history = {(m["subject"], m["value"]) for m in store.metric_history(JOB, "waste.monthly_usd")}
    assert (f"{SCOPE}/idle-nat-gateway", NAT_MONTH) in history
    assert (f"{SCOPE}/log-group-without-retention", 1.5) in history


def test_a_check_that_is_denied_hides_only_its_own_findings(creds, store):
    waste = plant_network_and_logs()
    waste_checks(regions=[REGION], aws_credentials=creds, store=store._block_document_name, now=NOW)
    nat = next(k for k in waste if k.startswith("nat-"))
    boto3.client("ec2", region_name=REGION).delete_nat_gateway(NatGatewayId=nat)
    denied = "elasticloadbalancing:DescribeLoadBalancers"
    with iam_user_with(flow_actions(waste_module, read_only=True) - {denied}) as limited:
        result = waste_checks(regions=[REGION], aws_credentials=limited, store=store._block_document_name,
                              now=NOW + timedelta(hours=1))
    [(where, why)] = result.errors.items()
    assert where == f"{SCOPE} unused-load-balancer" and f"not authorized to perform: {denied}" in why
    # The load balancers were not read: still open. The deleted NAT gateway was: resolved.
    assert {f["resource_id"] for f in store.findings_of(JOB, "open")} == set(waste) - {nat}
    assert [f["resource_id"] for f in store.findings_of(JOB, "resolved")] == [nat]


def test_leaving_a_check_out_keeps_its_open_findings_open(creds, store):
    plant_network_and_logs()
    waste_checks(regions=[REGION], aws_credentials=creds, store=store._block_document_name, now=NOW)
    result = waste_checks(policy=WastePolicy(checks=["idle-nat-gateway"]), regions=[REGION], aws_credentials=creds,
                          store=store._block_document_name, now=NOW + timedelta(hours=1))
    assert {f.kind for f in result.findings} == {"idle-nat-gateway"}
    assert store.findings_of(JOB, "resolved") == []
    assert set(result.errors) == {f"{SCOPE} log-group-without-retention", f"{SCOPE} unused-load-balancer"}


def _retention(name: str) -> int | None:
    [group] = [g for g in boto3.client("logs", region_name=REGION).describe_log_groups(
        logGroupNamePrefix=name)["logGroups"] if g["logGroupName"] == name]
    return group.get("retentionInDays")


def test_apply_sets_the_approved_retention_once_and_skips_a_group_tagged_since(creds, store):
    plant_network_and_logs()
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/pipelines/late")
    logs.create_log_stream(logGroupName="/pipelines/late", logStreamName="s")
    _store_bytes("/pipelines/late", 50 * GIB)
    arn = f"arn:aws:logs:{REGION}:{DEFAULT_ACCOUNT_ID}:log-group:"
    params = dict(regions=[REGION], aws_credentials=creds, store=store._block_document_name, apply=True, now=NOW)

    # Nothing is pre-selected: approving nothing changes nothing.
    state = run_and_answer(waste_checks, {"approved": []}, **params)
    assert state.is_completed() and _retention("/pipelines/ingest") is None

    # Between plan and approval someone tags /pipelines/late to be kept: the action re-reads and skips it.
    box: dict = {}
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    thread = threading.Thread(target=lambda: box.setdefault("state", waste_checks(return_state=True, **params)))
    thread.start()
    run_id = paused_run_id(JOB, started)
    logs.tag_resource(resourceArn=arn + "/pipelines/late", tags={KEEP["Key"]: "yes"})
    resume_flow_run(run_id, run_input={"approved": [arn + "/pipelines/ingest", arn + "/pipelines/late"]})
    thread.join(180)
    state = box["state"]
    assert state.is_completed()
    assert (_retention("/pipelines/ingest"), _retention("/pipelines/late")) == (30, None)
    actions = {(a["resource_id"].removeprefix(arn), a["outcome"], a["detail"]) for a in store.actions_of(JOB)}
    assert actions == {("/pipelines/ingest", "done", "retention set to 30 days"),
                       ("/pipelines/late", "skipped", "tagged dataplatform-ops:keep")}
    # The retained group resolved (it was acted on); a second apply finds nothing left to offer there.
    assert arn + "/pipelines/ingest" in {f["resource_id"] for f in store.findings_of(JOB, "resolved")}
    result = waste_checks(regions=[REGION], aws_credentials=creds, store=store._block_document_name,
                          now=NOW + timedelta(hours=1))
    assert arn + "/pipelines/ingest" not in {o.item_id for o in result.offers}


def test_least_privilege_policy_is_generated_from_the_declarations():
    read = flow_actions(waste_module, read_only=True)
    assert {"ec2:DescribeNatGateways", "cloudwatch:GetMetricData", "elasticloadbalancing:DescribeTargetHealth",
            "elasticloadbalancing:DescribeInstanceHealth", "logs:DescribeLogGroups", "tag:GetResources",
            "s3:ListBucketMultipartUploads", "rds:DescribeDBSnapshots", "ecr:DescribeImages", "dynamodb:DescribeTable",
            "secretsmanager:ListSecrets", "elasticmapreduce:ListClusters", "kinesis:DescribeStreamSummary",
            "sagemaker:ListNotebookInstances"} <= read
    # Only the approved changes write, and each asks for what it calls (re-reads included).
    assert flow_actions(waste_module) - read == {
        "logs:ListTagsForResource", "logs:PutRetentionPolicy", "s3:PutLifecycleConfiguration", "dynamodb:UpdateTable",
        "sagemaker:DescribeNotebookInstance", "sagemaker:StopNotebookInstance"}
    assert not any(a.split(":")[1].startswith(("Delete", "Terminate", "Release")) for a in flow_actions(waste_module))


@scenario_for("waste-checks")
def least_privilege_scenario(aws):
    waste = plant_network_and_logs()
    groups = ("/pipelines/ingest", "/pipelines/retained")
    ingest = f"arn:aws:logs:{REGION}:{DEFAULT_ACCOUNT_ID}:log-group:/pipelines/ingest"
    return Scenario(waste_checks, plain_creds(), dict(regions=[REGION], now=NOW), set(waste),
                    drop="ec2:DescribeNatGateways", approve=[ingest], withhold="logs:PutRetentionPolicy",
                    withheld={ingest}, state=lambda: {ingest: _retention(groups[0]), groups[1]: _retention(groups[1])})
