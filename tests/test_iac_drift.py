"""iac-drift: parsing states (pure), and the flow on moto against states written as Terraform 1.x
and Pulumi write them (modules, count and for_each keys, data sources, two workspaces, a Pulumi
checkpoint with a read resource) and a Serverless-style CloudFormation stack: exactly the planted
unmanaged, missing and drifted resources are reported, and the managed share is exact."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials
from pydantic import ValidationError

from rules.iac_drift import DriftPolicy, ManagedIndex
from rules.iac_state import StateError, StateObject, parse_state, parse_terraform
from tests.iac_fixtures import (
    ACCOUNT,
    aws_db_instance,
    aws_dynamodb_table,
    aws_ebs_volume,
    aws_iam_role,
    aws_instance,
    aws_lambda_function,
    aws_s3_bucket,
    aws_security_group,
    aws_sqs_queue,
    pulumi_checkpoint,
    sg_rule,
    tf_instance,
    tf_resource,
    tf_state,
)
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
US, EU = "us-east-1", "eu-west-1"
STATE_PASSWORD = "planted-state-password-" + uuid.uuid4().hex[:12]
IGNORE = ["aws_s3_bucket/acme-tfstate", "aws_s3_bucket/pulumi-state-*"]


# --- parsing --------------------------------------------------------------------------------

def _parsed(doc: bytes, source: str = "s3://b/k.tfstate"):
    return parse_terraform(json.loads(doc), source)


def test_terraform_state_managed_set_modules_indexes_and_data_sources():
    doc = tf_state([
        tf_resource("aws_caller_identity", "current", [tf_instance({"id": ACCOUNT, "account_id": ACCOUNT})],
                    mode="data"),
        tf_resource("aws_security_group", "legacy", [tf_instance(aws_security_group("sg-legacy", "legacy", US, [],
                                                                                     "vpc-1"))], mode="data"),
        tf_resource("aws_instance", "app", [
            tf_instance(aws_instance("i-1", "t3.micro", US, "vol-r1", []), index_key=0, schema_version=1),
            tf_instance(aws_instance("i-2", "t3.micro", US, "vol-r2", []), index_key=1, schema_version=1)]),
        tf_resource("aws_ebs_volume", "scratch", [
            tf_instance(aws_ebs_volume("vol-a", 100, "gp3", US), index_key="a"),
            tf_instance(aws_ebs_volume("vol-b", 50, "gp2", US), index_key="b")],
            module='module.data["prod"]', each="map"),
        tf_resource("aws_vpc", "main", [tf_instance({"id": "vpc-1", "arn": f"arn:aws:ec2:{US}:{ACCOUNT}:vpc/vpc-1"})]),
        tf_resource("aws_s3_bucket", "raw", [tf_instance(aws_s3_bucket("acme-raw", US))], module="module.lake"),
        tf_resource("aws_s3_bucket_versioning", "raw", [tf_instance(
            {"bucket": "acme-raw", "id": "acme-raw", "versioning_configuration": [{"status": "Enabled",
                                                                                   "mfa_delete": ""}]})],
            module="module.lake"),
        tf_resource("aws_sqs_queue", "q", [tf_instance(aws_sqs_queue("orders", US))]),
        tf_resource("aws_db_instance", "app", [tf_instance(aws_db_instance("app", US, "db.t3.micro", STATE_PASSWORD),
                                                           schema_version=2, sensitive=["password"])]),
    ])
    parsed = _parsed(doc)
    assert parsed.managed_count == 9 and parsed.data_sources == 2 and parsed.version == "1.9.8"
    primary = {(r.kind, r.native_id, r.address) for r in parsed.resources if not r.companion}
    assert primary == {
        ("aws_instance", "i-1", "aws_instance.app[0]"), ("aws_instance", "i-2", "aws_instance.app[1]"),
        ("aws_ebs_volume", "vol-a", 'module.data["prod"].aws_ebs_volume.scratch["a"]'),
        ("aws_ebs_volume", "vol-b", 'module.data["prod"].aws_ebs_volume.scratch["b"]'),
        ("aws_s3_bucket", "acme-raw", "module.lake.aws_s3_bucket.raw"),
        ("aws_sqs_queue", "orders", "aws_sqs_queue.q"), ("aws_db_instance", "app", "aws_db_instance.app")}
    companions = {(r.kind, r.native_id, r.attrs) for r in parsed.resources if r.companion}
    assert companions == {("aws_ebs_volume", "vol-r1", ()), ("aws_ebs_volume", "vol-r2", ()),
                          ("aws_s3_bucket", "acme-raw", (("versioning", "Enabled"),))}
    # The bucket's ARN names no account: it is the account of the rest of the state.
    assert {r.account for r in parsed.resources} == {ACCOUNT}
    assert STATE_PASSWORD not in repr(parsed)  # only compared attributes are kept


def test_a_workspace_state_and_a_pulumi_checkpoint():
    obj = StateObject("b", ".pulumi/stacks/dataplat/dev.json", "pulumi", 0, None)
    doc = pulumi_checkpoint("dataplat", "dev", [
        {"type": "aws:sqs/queue:Queue", "name": "ingest", "id": f"https://sqs.{EU}.amazonaws.com/{ACCOUNT}/ingest-dev",
         "outputs": {"arn": f"arn:aws:sqs:{EU}:{ACCOUNT}:ingest-dev", "name": "ingest-dev"}},
        {"type": "aws:lambda/function:Function", "name": "transform", "id": "transform-dev", "outputs": {
            "arn": f"arn:aws:lambda:{EU}:{ACCOUNT}:function:transform-dev", "name": "transform-dev",
            "runtime": "python3.12", "memorySize": 256, "timeout": 30, "role": "arn:aws:iam::1:role/r"}},
        {"type": "aws:s3/bucket:Bucket", "name": "logs", "id": "shared-logs", "external": True,
         "outputs": {"bucket": "shared-logs", "arn": "arn:aws:s3:::shared-logs"}},
    ])
    parsed = parse_state(doc, obj)
    assert {(r.kind, r.native_id, r.region, r.tool) for r in parsed.resources} == {
        ("aws_sqs_queue", "ingest-dev", EU, "pulumi"), ("aws_lambda_function", "transform-dev", EU, "pulumi")}
    fn = next(r for r in parsed.resources if r.kind == "aws_lambda_function")
    assert dict(fn.attrs) == {"runtime": "python3.12", "memory_size": 256, "timeout": 30,
                              "role": "arn:aws:iam::1:role/r"}
    assert parsed.data_sources == 1  # the read (external) bucket is not managed


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"version": 4, "terraform_version": "1.9.8", "resources": [{"mode": "managed", "ty', "not valid JSON at byte"),
    (b'{"version": 5, "resources": []}', "state format version 5 is not supported"),
    (b'{"version": 3, "modules": []}', "state format version 3 is not supported"),
    (b"", "the file is empty"),
    (b'["not", "a", "state"]', "not a Terraform state"),
])
def test_bad_states_say_what_is_wrong_without_quoting_them(raw, says):
    obj = StateObject("b", "k.tfstate", "terraform", len(raw), None)
    with pytest.raises(StateError, match=says) as error:
        parse_state(raw, obj)
    assert "terraform_version" not in str(error.value)


def test_index_matches_by_identity_and_merges_companion_rules():
    doc = tf_state([
        tf_resource("aws_security_group", "web", [tf_instance(aws_security_group(
            "sg-1", "web", US, [sg_rule("tcp", 443, 443, ["0.0.0.0/0"])], "vpc-1"))]),
        tf_resource("aws_security_group_rule", "ssh", [tf_instance({
            "type": "ingress", "security_group_id": "sg-1", "protocol": "tcp", "from_port": 22, "to_port": 22,
            "cidr_blocks": ["10.0.0.0/8"], "id": "sgrule-1"})]),
        tf_resource("aws_lambda_function", "f", [tf_instance(aws_lambda_function("f", US, "python3.12", 128, 3, "r"))]),
    ])
    index = ManagedIndex(_parsed(doc).resources)
    assert index.expected("aws_security_group", ACCOUNT, US, "sg-1") == {
        "ingress": ("tcp 22-22 10.0.0.0/8", "tcp 443-443 0.0.0.0/0")}
    assert index.manages("aws_lambda_function", ACCOUNT, US, "f")
    assert not index.manages("aws_lambda_function", ACCOUNT, EU, "f")  # same name, other region
    assert not index.manages("aws_lambda_function", "999999999999", US, "f")


def test_policy_errors_name_the_field():
    with pytest.raises(ValidationError, match="`kinds`: aws_vpc not compared"):
        DriftPolicy(kinds=["aws_vpc"])
    with pytest.raises(ValidationError, match="`ignore`: 'acme-tfstate' is not `<kind>/<id>`"):
        DriftPolicy(ignore=["acme-tfstate"])


# --- the flow on moto -----------------------------------------------------------------------

SERVERLESS = {  # what `serverless deploy` leaves in CloudFormation for a small service
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "The AWS CloudFormation template for this Serverless application",
    "Resources": {
        "IamRoleLambdaExecution": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "orders-svc-prod-us-east-1-lambdaRole",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}, "Action": ["sts:AssumeRole"]}]},
            "Path": "/"}},
        "HandlerLambdaFunction": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "orders-svc-prod-handler", "Runtime": "python3.12", "Handler": "handler.main",
            "Code": {"ZipFile": "def main(event, context):\n    return {}\n"}, "MemorySize": 1024, "Timeout": 6,
            "Role": {"Fn::GetAtt": ["IamRoleLambdaExecution", "Arn"]}}},
        "JobsQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "orders-svc-prod-jobs"}},
    },
}


def _zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def main(event, context):\n    return {}\n")
    return buf.getvalue()


class World:
    """What the drift fixture planted: ids moto chose, and the credentials block."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.creds = ""


def _instance(ec2, instance_type: str, tags: dict[str, str] | None = None) -> tuple[str, str]:
    spec = {"TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v}
                                                                         for k, v in tags.items()]}]} if tags else {}
    i = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType=instance_type, **spec)
    instance = i["Instances"][0]
    return instance["InstanceId"], instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]


def plant_drift_world(password: str = STATE_PASSWORD) -> World:
    """An account in two regions, half managed by Terraform (two workspaces), a Pulumi stack and
    a Serverless service, with planted unmanaged, missing and drifted resources."""
    w = World()
    ec2 = boto3.client("ec2", region_name=US)
    s3, s3_eu = boto3.client("s3", region_name=US), boto3.client("s3", region_name=EU)
    iam = boto3.client("iam", region_name=US)

    # Live, as `terraform apply` left it (ids are moto's), then changed by hand.
    w.ids["app0"], w.ids["app0-root"] = _instance(ec2, "t3.micro")
    w.ids["app1"], w.ids["app1-root"] = _instance(ec2, "t3.micro")
    w.ids["stg0"], w.ids["stg0-root"] = _instance(ec2, "t3.micro")
    w.ids["manual"], w.ids["manual-root"] = _instance(ec2, "t3.medium", {"Name": "debug-box"})
    ec2.stop_instances(InstanceIds=[w.ids["app0"]])
    ec2.modify_instance_attribute(InstanceId=w.ids["app0"], InstanceType={"Value": "t3.large"})  # resized by hand
    ec2.start_instances(InstanceIds=[w.ids["app0"]])
    w.ids["vol-a"] = ec2.create_volume(AvailabilityZone=f"{US}a", Size=200, VolumeType="gp3")["VolumeId"]  # grown
    w.ids["vol-b"] = ec2.create_volume(AvailabilityZone=f"{US}a", Size=50, VolumeType="gp2")["VolumeId"]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    w.ids["sg-web"] = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=w.ids["sg-web"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])  # opened by hand
    w.ids["sg-legacy"] = ec2.create_security_group(GroupName="legacy-ssh", Description="x", VpcId=vpc)["GroupId"]

    for name in ("acme-tfstate", "acme-raw-data", "manual-exports"):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket="acme-raw-data", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_versioning(Bucket="acme-raw-data", VersioningConfiguration={"Status": "Suspended"})  # by hand
    s3.put_public_access_block(Bucket="acme-raw-data", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    for name in ("pulumi-state-eu", "shared-logs"):
        s3_eu.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": EU})

    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"Service": "lambda.amazonaws.com"}}]})
    etl_role = iam.create_role(RoleName="etl-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.create_role(RoleName="console-created-role", AssumeRolePolicyDocument=trust, Path="/service-role/")
    iam.create_role(RoleName="break-glass", AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": "dataplatform-ops:keep", "Value": "incident access"}])
    iam.create_service_linked_role(AWSServiceName="elasticmapreduce.amazonaws.com")
    boto3.client("lambda", region_name=US).create_function(
        FunctionName="etl", Runtime="python3.11", Role=etl_role, Handler="handler.main", Code={"ZipFile": _zip()},
        MemorySize=1024, Timeout=60)  # memory raised by hand from 512
    boto3.client("lambda", region_name=EU).create_function(
        FunctionName="transform-dev", Runtime="python3.12", Role=etl_role, Handler="handler.main",
        Code={"ZipFile": _zip()}, MemorySize=256, Timeout=30)
    rds = boto3.client("rds", region_name=US)
    for ident, cls in (("app", "db.t3.micro"), ("reports-db", "db.t3.medium")):
        rds.create_db_instance(DBInstanceIdentifier=ident, DBInstanceClass=cls, Engine="postgres",
                               MasterUsername="app", MasterUserPassword="Passw0rd!", AllocatedStorage=20)
    boto3.client("redshift", region_name=US).create_cluster(
        ClusterIdentifier="adhoc-wh", NodeType="ra3.xlplus", MasterUsername="admin", MasterUserPassword="Passw0rd!",
        ClusterType="single-node")
    for name in ("staging-events", "terraform-locks"):
        boto3.client("dynamodb", region_name=US).create_table(
            TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    sqs_eu = boto3.client("sqs", region_name=EU)
    for name in ("ingest-dev", "manual-queue"):
        sqs_eu.create_queue(QueueName=name)
    boto3.client("cloudformation", region_name=US).create_stack(
        StackName="orders-svc-prod", TemplateBody=json.dumps(SERVERLESS), Capabilities=["CAPABILITY_NAMED_IAM"])

    # The states, as Terraform and Pulumi wrote them when they last applied.
    prod = tf_state([
        tf_resource("aws_caller_identity", "current", [tf_instance(
            {"account_id": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "id": ACCOUNT, "user_id": "AIDA"})],
            mode="data"),
        tf_resource("aws_security_group", "legacy", [tf_instance(aws_security_group(
            w.ids["sg-legacy"], "legacy-ssh", US, [], vpc))], mode="data"),  # read, not managed
        tf_resource("aws_security_group", "web", [tf_instance(aws_security_group(
            w.ids["sg-web"], "web", US, [sg_rule("tcp", 443, 443, ["0.0.0.0/0"])], vpc), schema_version=1)],
            module="module.network"),
        tf_resource("aws_instance", "app", [
            tf_instance(aws_instance(w.ids[f"app{n}"], "t3.micro", US, w.ids[f"app{n}-root"], [w.ids["sg-web"]]),
                        index_key=n, schema_version=1, dependencies=["module.network.aws_security_group.web"])
            for n in (0, 1)]),
        tf_resource("aws_ebs_volume", "scratch", [
            tf_instance(aws_ebs_volume(w.ids["vol-a"], 100, "gp3", US), index_key="a"),
            tf_instance(aws_ebs_volume(w.ids["vol-b"], 50, "gp2", US), index_key="b")],
            module='module.data["prod"]', each="map"),
        tf_resource("aws_s3_bucket", "raw", [tf_instance(aws_s3_bucket("acme-raw-data", US))], module="module.lake"),
        tf_resource("aws_s3_bucket_versioning", "raw", [tf_instance({
            "bucket": "acme-raw-data", "expected_bucket_owner": "", "id": "acme-raw-data", "mfa": None,
            "versioning_configuration": [{"mfa_delete": "", "status": "Enabled"}]})], module="module.lake"),
        tf_resource("aws_s3_bucket_public_access_block", "raw", [tf_instance({
            "block_public_acls": True, "block_public_policy": True, "bucket": "acme-raw-data", "id": "acme-raw-data",
            "ignore_public_acls": True, "restrict_public_buckets": True})], module="module.lake"),
        tf_resource("aws_iam_role", "etl", [tf_instance(aws_iam_role("etl-role"))]),
        tf_resource("aws_lambda_function", "etl", [tf_instance(aws_lambda_function(
            "etl", US, "python3.11", 512, 60, etl_role))]),
        tf_resource("aws_db_instance", "app", [tf_instance(aws_db_instance("app", US, "db.t3.micro", password),
                                                           schema_version=2, sensitive=["password"])]),
        tf_resource("aws_sqs_queue", "retry", [tf_instance(aws_sqs_queue("orders-retry", US))]),  # deleted by hand
    ], outputs={"db_password": {"value": password, "type": "string", "sensitive": True}}, serial=42)
    staging = tf_state([
        tf_resource("aws_instance", "app", [tf_instance(aws_instance(
            w.ids["stg0"], "t3.micro", US, w.ids["stg0-root"], []), index_key=0, schema_version=1)]),
        tf_resource("aws_dynamodb_table", "events", [tf_instance(aws_dynamodb_table("staging-events", US),
                                                                 schema_version=1)]),
    ], serial=9)
    s3.put_object(Bucket="acme-tfstate", Key="platform/terraform.tfstate", Body=prod)
    s3.put_object(Bucket="acme-tfstate", Key="env:/staging/platform/terraform.tfstate", Body=staging)
    checkpoint = pulumi_checkpoint("dataplat", "dev", [
        {"type": "aws:sqs/queue:Queue", "name": "ingest", "id": f"https://sqs.{EU}.amazonaws.com/{ACCOUNT}/ingest-dev",
         "outputs": {"arn": f"arn:aws:sqs:{EU}:{ACCOUNT}:ingest-dev", "name": "ingest-dev"}},
        {"type": "aws:lambda/function:Function", "name": "transform", "id": "transform-dev", "outputs": {
            "arn": f"arn:aws:lambda:{EU}:{ACCOUNT}:function:transform-dev", "name": "transform-dev",
            "runtime": "python3.12", "memorySize": 256, "timeout": 30, "role": etl_role}},
        {"type": "aws:ec2/instance:Instance", "name": "worker", "id": "i-0badc0ffee0000001", "outputs": {
            "arn": f"arn:aws:ec2:{EU}:{ACCOUNT}:instance/i-0badc0ffee0000001", "instanceType": "t3.small"}},
        {"type": "aws:s3/bucket:Bucket", "name": "logs", "id": "shared-logs", "external": True,
         "outputs": {"bucket": "shared-logs", "arn": "arn:aws:s3:::shared-logs"}},
    ])
    s3_eu.put_object(Bucket="pulumi-state-eu", Key=".pulumi/stacks/dataplat/dev.json", Body=checkpoint)
    w.creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name=US).save(w.creds)
    return w


BACKEND = [{"bucket": "acme-tfstate", "key": "platform/terraform.tfstate"}]


@pytest.fixture
def drift_world(aws) -> World:
    return plant_drift_world()


def _expected(w: World) -> set[tuple[str, str, str]]:
    us, eu = f"{ACCOUNT}/{US}", f"{ACCOUNT}/{EU}"
    return {
        ("unmanaged-resource", f"aws_instance/{w.ids['manual']}", us),
        ("unmanaged-resource", f"aws_security_group/{w.ids['sg-legacy']}", us),
        ("unmanaged-resource", "aws_s3_bucket/manual-exports", us),
        ("unmanaged-resource", "aws_iam_role/console-created-role", us),
        ("unmanaged-resource", "aws_db_instance/reports-db", us),
        ("unmanaged-resource", "aws_redshift_cluster/adhoc-wh", us),
        ("unmanaged-resource", "aws_dynamodb_table/terraform-locks", us),
        ("unmanaged-resource", "aws_s3_bucket/shared-logs", eu),
        ("unmanaged-resource", "aws_sqs_queue/manual-queue", eu),
        ("missing-resource", "aws_sqs_queue/orders-retry", us),
        ("missing-resource", "aws_instance/i-0badc0ffee0000001", eu),
        ("drifted-resource", f"aws_instance/{w.ids['app0']}", us),
        ("drifted-resource", f"aws_ebs_volume/{w.ids['vol-a']}", us),
        ("drifted-resource", f"aws_security_group/{w.ids['sg-web']}", us),
        ("drifted-resource", "aws_s3_bucket/acme-raw-data", us),
        ("drifted-resource", "aws_lambda_function/etl", us),
    }


# (region, kind) -> (resources, managed): every planted live resource, counted by hand.
COVERAGE = {
    (US, "aws_instance"): (4, 3), (US, "aws_ebs_volume"): (6, 5), (US, "aws_security_group"): (2, 1),
    (US, "aws_s3_bucket"): (2, 1), (US, "aws_lambda_function"): (2, 2), (US, "aws_iam_role"): (4, 2),
    (US, "aws_db_instance"): (2, 1), (US, "aws_redshift_cluster"): (1, 0), (US, "aws_sqs_queue"): (1, 1),
    (US, "aws_dynamodb_table"): (2, 1),
    (EU, "aws_s3_bucket"): (1, 0), (EU, "aws_sqs_queue"): (2, 1), (EU, "aws_lambda_function"): (1, 1),
}


def test_flow_reports_exactly_the_planted_drift_and_the_managed_share(drift_world, store):
    from flows.iac_drift import iac_drift

    w = drift_world
    result = iac_drift(policy=DriftPolicy(ignore=IGNORE), backends=BACKEND, regions=[US, EU],
                       aws_credentials=w.creds, store=store._block_document_name, now=NOW)
    assert result.errors == {}
    assert {(f.kind, f.resource_id, f.scope) for f in result.findings} == _expected(w)
    by_id = {f.resource_id: f for f in result.findings}

    manual = by_id[f"aws_instance/{w.ids['manual']}"]
    # t3.medium at $0.0416/h and its 8 GiB gp2 root volume at $0.10/GB-month.
    assert manual.monthly_cost_usd == pytest.approx(round(0.0416 * 730, 2) + 0.8)
    assert manual.numbers["volumes"] == [w.ids["manual-root"]] and "t3.medium running" in manual.reason
    assert by_id["aws_db_instance/reports-db"].monthly_cost_usd == pytest.approx(round(0.072 * 730, 2))
    assert by_id["aws_sqs_queue/manual-queue"].monthly_cost_usd is None  # billed by use: no list price

    drift = {rid: by_id[rid].numbers["attributes"] for rid in by_id if by_id[rid].kind == "drifted-resource"}
    assert drift == {
        f"aws_instance/{w.ids['app0']}": {"instance_type": {"state": "t3.micro", "live": "t3.large"}},
        f"aws_ebs_volume/{w.ids['vol-a']}": {"size": {"state": "100", "live": "200"}},
        f"aws_security_group/{w.ids['sg-web']}": {"ingress": {
            "state": "tcp 443-443 0.0.0.0/0", "live": "tcp 22-22 0.0.0.0/0; tcp 443-443 0.0.0.0/0"}},
        "aws_s3_bucket/acme-raw-data": {"versioning": {"state": "Enabled", "live": "Suspended"}},
        "aws_lambda_function/etl": {"memory_size": {"state": "512", "live": "1024"}},
    }
    assert by_id[f"aws_instance/{w.ids['app0']}"].numbers["address"] == "aws_instance.app[0]"
    missing = by_id["aws_sqs_queue/orders-retry"]
    assert missing.numbers["source"] == "s3://acme-tfstate/platform/terraform.tfstate"
    assert by_id["aws_instance/i-0badc0ffee0000001"].numbers["tool"] == "pulumi"

    got = {}
    for region, kind in COVERAGE:
        subject = f"{ACCOUNT}/{region}/{kind}"
        [total] = store.metric_history("iac-drift", "iac.resources", subject)
        [managed] = store.metric_history("iac-drift", "iac.managed", subject)
        got[(region, kind)] = (total["value"], managed["value"])
    assert got == COVERAGE
    [share] = store.metric_history("iac-drift", "iac.managed_share", f"{ACCOUNT}/{US}/aws_iam_role")
    assert share["value"] == 0.5


KMS_DENIED = ("User: arn:aws:sts::123456789012:assumed-role/dataplatform-ops/run is not authorized to perform: "
              "kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/1f2e3d4c because no "
              "identity-based policy allows the kms:Decrypt action")


def test_bad_states_are_named_the_rest_is_still_read_and_nothing_resolves_falsely(drift_world, store, monkeypatch):
    """A truncated state, an unknown format version, a state the role cannot decrypt, an empty
    backend, a backend whose bucket is gone. moto does not enforce KMS on S3 reads, so that one GetObject is answered the way
    AWS answers it (the error text is AWS's); everything else is moto."""
    import botocore.client
    from botocore.exceptions import ClientError

    from flows.iac_drift import iac_drift

    w = drift_world
    kw = dict(policy=DriftPolicy(ignore=IGNORE), regions=[US, EU], aws_credentials=w.creds,
              store=store._block_document_name, now=NOW)
    first = iac_drift(backends=BACKEND, **kw)
    unmanaged = {f.resource_id for f in first.findings if f.kind == "unmanaged-resource"}
    assert len(unmanaged) == 9

    s3 = boto3.client("s3", region_name=US)
    good = s3.get_object(Bucket="acme-tfstate", Key="env:/staging/platform/terraform.tfstate")["Body"].read()
    s3.put_object(Bucket="acme-tfstate", Key="broken/terraform.tfstate", Body=good[: len(good) * 2 // 5])
    s3.put_object(Bucket="acme-tfstate", Key="future/terraform.tfstate", Body=good.replace(b'"version": 4', b'"version": 5', 1))
    s3.put_object(Bucket="acme-tfstate", Key="secure/terraform.tfstate", Body=good, ServerSideEncryption="aws:kms")
    s3.create_bucket(Bucket="acme-empty-states")
    real_call = botocore.client.BaseClient._make_api_call

    def kms_denies(client, operation, params):
        if operation == "GetObject" and params.get("Key") == "secure/terraform.tfstate":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": KMS_DENIED}}, operation)
        return real_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", kms_denies)
    second = iac_drift(backends=[*BACKEND, {"bucket": "acme-empty-states", "prefix": "states/"},
                                 {"bucket": "acme-deleted-states", "prefix": "states/"}], **kw)

    bad = {f.resource_id: f.reason for f in second.findings if f.kind in ("unreadable-state", "state-backend-empty")}
    assert set(bad) == {"s3://acme-tfstate/broken/terraform.tfstate", "s3://acme-tfstate/future/terraform.tfstate",
                        "s3://acme-tfstate/secure/terraform.tfstate", "s3://acme-empty-states/states/",
                        "s3://acme-deleted-states/states/"}
    assert "not valid JSON at byte" in bad["s3://acme-tfstate/broken/terraform.tfstate"]
    assert "state format version 5 is not supported" in bad["s3://acme-tfstate/future/terraform.tfstate"]
    assert "AccessDenied" in bad["s3://acme-tfstate/secure/terraform.tfstate"] and "kms:Decrypt" in \
        bad["s3://acme-tfstate/secure/terraform.tfstate"]
    assert "no state found there" in bad["s3://acme-empty-states/states/"]
    assert "NoSuchBucket" in bad["s3://acme-deleted-states/states/"]
    # The other states were read: missing and drifted are reported as before.
    before = {(f.kind, f.resource_id) for f in first.findings if f.kind != "unmanaged-resource"}
    assert {(f.kind, f.resource_id) for f in second.findings if f.kind in ("missing-resource", "drifted-resource")} \
        == before
    # An unreadable state may manage anything: nothing is called unmanaged, and nothing resolves.
    assert not [f for f in second.findings if f.kind == "unmanaged-resource"]
    assert any("4 state(s) or backend(s) could not be read" in why for why in second.errors.values())
    assert {f["resource_id"] for f in store.findings_of("iac-drift", "open")} >= unmanaged
    assert not store.findings_of("iac-drift", "resolved")


def test_a_password_in_a_state_stays_in_the_state(aws, store, routed):
    """Both IaC jobs read a state holding a database password (an attribute and a sensitive
    output): it reaches no log, event, artifact, flow or task run, store row or chat message."""
    from datetime import timedelta

    from flows.iac_drift import iac_drift
    from flows.iac_health import iac_health
    from tests.server_search import server_haystack, store_haystack

    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    password = "planted-state-password-" + uuid.uuid4().hex
    w = plant_drift_world(password)
    kw = dict(regions=[US, EU], aws_credentials=w.creds, store=store._block_document_name, backends=BACKEND)
    drift = iac_drift(policy=DriftPolicy(ignore=IGNORE), **kw)
    health = iac_health(**kw)
    assert drift.findings and health.findings
    routed.settle(quiet=3, timeout=60)

    haystack = "\n".join([m.raw.decode() for m in routed.received] + server_haystack(since)
                         + store_haystack(store.engine))
    # The search saw both runs' findings and the state they read: it is not vacuous.
    assert "aws_db_instance/reports-db" in haystack and "s3://acme-tfstate/" in haystack
    assert "iac-drift" in haystack and "iac-health" in haystack and routed.received
    assert password not in haystack
    state = boto3.client("s3", region_name=US).get_object(Bucket="acme-tfstate", Key="platform/terraform.tfstate")
    assert password in state["Body"].read().decode()  # it stays where it was


@scenario_for("iac-drift")
def least_privilege_scenario(drift_world):
    from flows.iac_drift import iac_drift

    w = drift_world
    return Scenario(iac_drift, w.creds, dict(policy=DriftPolicy(ignore=IGNORE), backends=BACKEND, regions=[US, EU],
                                             now=NOW),
                    {rid for _, rid, _ in _expected(w)}, drop="cloudformation:ListStackResources")
