"""iac-health: backends, locks and stacks. Rules without I/O; the flow on moto with states written
as Terraform and Pulumi write them (tests/iac_fixtures.py); stale-lock removal through the one
approval path."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto.cloudformation.models import cloudformation_backends
from prefect_aws import AwsCredentials
from pydantic import ValidationError

from rules.iac_health import (
    IacHealthPolicy,
    Lock,
    LockInfo,
    Stack,
    judge_locks,
    judge_stacks,
    parse_lock_info,
)
from rules.iac_state import StateBackend
from tests.approvals import run_and_answer
from tests.iac_fixtures import (
    ACCOUNT,
    aws_instance,
    lock_info,
    lock_table,
    md5,
    pulumi_checkpoint,
    put_state,
    tf_instance,
    tf_resource,
    tf_state,
)
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
REGIONS = ["us-east-1", "eu-west-1"]
KEEP = {"dataplatform-ops:keep": "yes"}
BACKENDS = [
    {"bucket": "acme-tfstate", "key": "network/terraform.tfstate", "lock_table": "tf-locks"},
    {"bucket": "acme-tfstate", "key": "apps/api/terraform.tfstate", "use_lockfile": True},
    {"bucket": "acme-tfstate", "key": "old/terraform.tfstate", "lock_table": "tf-locks"},
    {"bucket": "acme-tfstate", "key": "billing/terraform.tfstate", "lock_table": "missing-locks"},
]
PROD = "env:/prod/network/terraform.tfstate"


# --- rules ----------------------------------------------------------------------------------

def test_lock_info_is_read_as_terraform_writes_it():
    info = parse_lock_info(lock_info("b/k", "ci@runner-7", "OperationTypeApply", NOW - timedelta(hours=3)))
    assert (info.who, info.operation, info.version, info.path) == ("ci@runner-7", "OperationTypeApply", "1.9.8", "b/k")
    assert info.created == NOW - timedelta(hours=3)  # nanoseconds cut to microseconds, UTC kept
    assert parse_lock_info("not json") is None and parse_lock_info("") is None


def test_a_lock_is_stale_after_the_threshold_and_critical_after_the_second():
    policy = IacHealthPolicy(stale_lock_hours=4, stale_lock_critical_hours=24)

    def lock(hours: float) -> Lock:
        return Lock(f"b/{hours}", "us-east-1", table="t", info=LockInfo("id", "OperationTypeApply", "ci@r",
                                                                          "1.9.8", NOW - timedelta(hours=hours)))
    found = {f.resource_id: f for f in judge_locks([lock(1), lock(5), lock(30)], policy, NOW)}
    assert set(found) == {"dynamodb:t/b/5", "dynamodb:t/b/30"}
    assert found["dynamodb:t/b/5"].severity == "warning" and found["dynamodb:t/b/30"].severity == "critical"
    assert "ci@r has held the lock on s3://b/30 for 30.0 h (OperationTypeApply, Terraform 1.9.8" in \
        found["dynamodb:t/b/30"].reason
    with pytest.raises(ValidationError, match="stale_lock_critical_hours"):
        IacHealthPolicy(stale_lock_hours=10, stale_lock_critical_hours=5)


def test_stacks_failed_rolled_back_or_forgotten():
    old, recent = NOW - timedelta(days=400), NOW - timedelta(days=3)
    stacks = [Stack("a", "r", "UPDATE_ROLLBACK_FAILED", old, recent, "Resource handler returned message"),
              Stack("b", "r", "ROLLBACK_COMPLETE", recent), Stack("c", "r", "UPDATE_COMPLETE", old),
              Stack("d", "r", "UPDATE_COMPLETE", old, recent), Stack("e", "r", "UPDATE_IN_PROGRESS", old)]
    found = {(f.kind, f.resource_id, f.severity.value) for f in judge_stacks(stacks, IacHealthPolicy(), NOW)}
    assert found == {("stack-failed", "a", "critical"), ("stack-failed", "b", "warning"), ("stack-stale", "c", "info")}


def test_backend_config_errors_name_the_field_and_the_fix():
    with pytest.raises(ValidationError, match="`backends\\[\\].bucket`: 's3://acme' is not an S3 bucket name"):
        StateBackend(bucket="s3://acme")
    with pytest.raises(ValidationError, match="`key`.*or\n?.*`prefix`.*not both"):
        StateBackend(bucket="acme", key="a.tfstate", prefix="x/")
    with pytest.raises(ValidationError, match="`backends\\[\\].key`: 'states/'"):
        StateBackend(bucket="acme", key="states/")
    b = StateBackend(bucket="acme", key="app/terraform.tfstate")
    assert [b.workspace_of(k) for k in ("app/terraform.tfstate", "env:/prod/app/terraform.tfstate",
                                        "env:/prod/other/terraform.tfstate", "app/terraform.tfstate.tflock")] \
        == ["default", "prod", None, None]


# --- the flow on moto -----------------------------------------------------------------------

def _network_state(serial: int) -> bytes:
    return tf_state([tf_resource("aws_instance", "nat", [tf_instance(aws_instance(
        "i-0a1b2c3d4e5f00001", "t3.micro", "us-east-1", "vol-0a1b2c3d4e5f00001", ["sg-0a1b2c3d4e5f00001"]),
        schema_version=1)])], serial=serial)


@pytest.fixture
def iac_world(aws):
    """Three state buckets (one well kept, one neglected, one in eu-west-1 for Pulumi), lock
    tables with digests and locks, an S3 lock file and three stacks; -> creds block name."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3_eu = boto3.client("s3", region_name="eu-west-1")
    ddb = boto3.client("dynamodb", region_name="us-east-1")

    s3.create_bucket(Bucket="acme-tfstate")
    s3.put_bucket_versioning(Bucket="acme-tfstate", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket="acme-tfstate", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_public_access_block(Bucket="acme-tfstate", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_lifecycle_configuration(Bucket="acme-tfstate", LifecycleConfiguration={"Rules": [{
        "ID": "expire-old-states", "Status": "Enabled", "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}]})
    lock_table(ddb, "tf-locks")
    lock_table(ddb, "terraform-locks-keep", tags=KEEP)
    ddb.create_table(TableName="terraform-cache", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")

    # Backend A and its workspaces, written through the lock table; prod was last written without it.
    put_state(s3, ddb, "acme-tfstate", "network/terraform.tfstate", _network_state(11), "tf-locks")
    put_state(s3, ddb, "acme-tfstate", "env:/staging/network/terraform.tfstate", _network_state(4), "tf-locks")
    put_state(s3, ddb, "acme-tfstate", PROD, _network_state(20), "tf-locks")
    s3.put_object(Bucket="acme-tfstate", Key=PROD, Body=_network_state(21))  # a run without `dynamodb_table`
    ddb.put_item(TableName="tf-locks", Item={"LockID": {"S": f"acme-tfstate/{PROD}"}, "Info": {"S": lock_info(
        f"acme-tfstate/{PROD}", "ci@runner-7", "OperationTypeApply", NOW - timedelta(hours=30))}})
    ddb.put_item(TableName="tf-locks", Item={"LockID": {"S": "acme-tfstate/network/terraform.tfstate"}, "Info": {
        "S": lock_info("acme-tfstate/network/terraform.tfstate", "ana@laptop", "OperationTypePlan",
                       NOW - timedelta(minutes=10))}})
    ddb.put_item(TableName="terraform-locks-keep", Item={"LockID": {"S": "acme-tfstate/sandbox/terraform.tfstate"},
                                                         "Info": {"S": lock_info(
        "acme-tfstate/sandbox/terraform.tfstate", "bo@laptop", "OperationTypeApply", NOW - timedelta(hours=50))}})
    # Backend B locks with S3 lock files; its lock is 6 hours old.
    put_state(s3, None, "acme-tfstate", "apps/api/terraform.tfstate", _network_state(3))
    s3.put_object(Bucket="acme-tfstate", Key="apps/api/terraform.tfstate.tflock", Body=lock_info(
        "acme-tfstate/apps/api/terraform.tfstate", "dev@laptop", "OperationTypePlan", NOW - timedelta(hours=6)))
    # Backend D names a lock table that does not exist.
    put_state(s3, None, "acme-tfstate", "billing/terraform.tfstate", _network_state(1))

    # A neglected bucket with a state only discovery finds.
    s3.create_bucket(Bucket="legacy-terraform-state")
    s3.put_object(Bucket="legacy-terraform-state", Key="app.tfstate", Body=_network_state(2))
    s3.create_bucket(Bucket="website-assets")
    s3.put_object(Bucket="website-assets", Key="index.html", Body=b"<html></html>")

    # Pulumi in eu-west-1: versioned, no lifecycle rule, three versions of the checkpoint.
    s3_eu.create_bucket(Bucket="pulumi-state-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3_eu.put_bucket_versioning(Bucket="pulumi-state-eu", VersioningConfiguration={"Status": "Enabled"})
    s3_eu.put_bucket_encryption(Bucket="pulumi-state-eu", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    s3_eu.put_public_access_block(Bucket="pulumi-state-eu", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    sizes = []
    for n in range(3):
        body = pulumi_checkpoint("dataplat", "dev", [{"type": "aws:sqs/queue:Queue", "name": f"q{n}", "id": "u",
                                                       "outputs": {"name": f"q{n}"}}])
        s3_eu.put_object(Bucket="pulumi-state-eu", Key=".pulumi/stacks/dataplat/dev.json", Body=body)
        sizes.append(len(body))

    # Stacks: one stuck in a failed rollback, one untouched for 400 days, one fine.
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    template = '{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}'
    for name in ("orders-svc-prod", "reports-svc-dev", "ingest-svc-prod"):
        cfn.create_stack(StackName=name, TemplateBody=template)
    stacks = {s.name: s for s in cloudformation_backends[ACCOUNT]["us-east-1"].stacks.values()}
    stacks["orders-svc-prod"].status = "UPDATE_ROLLBACK_FAILED"  # moto cannot fail a rollback by itself
    stacks["reports-svc-dev"].creation_time = NOW - timedelta(days=400)
    for s in stacks.values():
        if s.name != "reports-svc-dev":
            s.creation_time = NOW - timedelta(days=2)

    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return creds, sum(sizes[:2])


EXPECTED = {
    ("state-backend-empty", "s3://acme-tfstate/old/terraform.tfstate", "warning"),
    ("state-bucket-unversioned", "s3://legacy-terraform-state/", "warning"),
    ("state-bucket-unencrypted", "s3://legacy-terraform-state/", "warning"),
    ("state-bucket-public-access", "s3://legacy-terraform-state/", "critical"),
    ("state-unlocked", "s3://legacy-terraform-state/app.tfstate", "info"),
    ("state-lock-bypassed", f"s3://acme-tfstate/{PROD}", "warning"),
    ("lock-table-missing", "missing-locks", "critical"),
    ("stale-state-lock", f"dynamodb:tf-locks/acme-tfstate/{PROD}", "critical"),
    ("stale-state-lock", "s3://acme-tfstate/apps/api/terraform.tfstate.tflock", "warning"),
    ("stale-state-lock", "dynamodb:terraform-locks-keep/acme-tfstate/sandbox/terraform.tfstate", "critical"),
    ("stack-failed", "orders-svc-prod", "critical"),
    ("stack-stale", "reports-svc-dev", "info"),
    ("state-versions-kept", "s3://pulumi-state-eu/", "info"),
}


def test_flow_reports_exactly_the_planted_problems(iac_world, store):
    from flows.iac_health import iac_health

    creds, noncurrent = iac_world
    result = iac_health(backends=BACKENDS, regions=REGIONS, aws_credentials=creds,
                        store=store._block_document_name, now=NOW)
    assert {(f.kind, f.resource_id, f.severity.value) for f in result.findings} == EXPECTED
    assert result.errors == {}
    by_id = {f.resource_id: f for f in result.findings}
    kept = by_id["s3://pulumi-state-eu/"]
    assert kept.numbers["noncurrent_bytes"] == noncurrent and kept.numbers["noncurrent_versions"] == 2
    assert kept.monthly_cost_usd == pytest.approx(round(noncurrent / 1024**3 * 0.023, 4))
    assert kept.scope == f"{ACCOUNT}/eu-west-1"
    stale = by_id[f"dynamodb:tf-locks/acme-tfstate/{PROD}"]
    assert "ci@runner-7 has held the lock" in stale.reason and "OperationTypeApply" in stale.reason
    assert stale.numbers["hours"] == 30.0
    # Offered: the two stale locks outside the opted-out table; that one is listed, not offered.
    assert {(o.item_id, o.eligible) for o in result.offers} == {
        (f"dynamodb:tf-locks/acme-tfstate/{PROD}", True),
        ("s3://acme-tfstate/apps/api/terraform.tfstate.tflock", True),
        ("dynamodb:terraform-locks-keep/acme-tfstate/sandbox/terraform.tfstate", False)}
    assert result.actions == []  # dry run: nothing applied


def test_stale_locks_are_removed_only_when_approved_and_recorded(iac_world, store):
    from flows.iac_health import iac_health

    creds, _ = iac_world
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    kw = dict(backends=BACKENDS, regions=REGIONS, aws_credentials=creds, store=store._block_document_name, now=NOW)
    table_lock = f"dynamodb:tf-locks/acme-tfstate/{PROD}"

    def locks() -> set[str]:
        items = {i["LockID"]["S"] for t in ("tf-locks", "terraform-locks-keep")
                 for i in ddb.scan(TableName=t)["Items"] if "Info" in i}
        files = {o["Key"] for o in s3.list_objects_v2(Bucket="acme-tfstate").get("Contents", [])
                 if o["Key"].endswith(".tflock")}
        return items | files

    before = locks()
    assert run_and_answer(iac_health, {"approved": []}, apply=True, **kw).is_completed()
    assert locks() == before  # nothing chosen, nothing changed

    assert run_and_answer(iac_health, {"approved": [table_lock]}, apply=True, **kw).is_completed()
    assert locks() == before - {f"acme-tfstate/{PROD}"}
    [action] = store.actions_of("iac-health")
    assert (action["resource_id"], action["outcome"], action["dry_run"]) == (table_lock, "done", False)
    assert "ci@runner-7" in action["detail"]

    after = iac_health(**kw)
    assert table_lock not in {f.resource_id for f in after.findings}  # resolved
    assert "s3://acme-tfstate/apps/api/terraform.tfstate.tflock" in {o.item_id for o in after.offers}


def test_a_lock_retaken_since_the_plan_is_left_alone(iac_world):
    from tasks.aws.clients import Account
    from tasks.aws.iac import lock_tables, remove_table_lock

    creds, _ = iac_world
    account = Account(AwsCredentials.load(creds))
    [table] = [t for t in lock_tables(account, "us-east-1", ["tf-locks"], [], "dataplatform-ops:keep")
               if t.name == "tf-locks"]
    [planned] = [lock for lock in table.locks if lock.state_path == f"acme-tfstate/{PROD}"]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.put_item(TableName="tf-locks", Item={"LockID": {"S": planned.state_path}, "Info": {"S": lock_info(
        planned.state_path, "ci@runner-8", "OperationTypeApply", NOW)}})  # the crashed run's retry took it
    outcome = remove_table_lock(account, planned, "dataplatform-ops:keep")
    assert (outcome.status, outcome.detail) == ("skipped", "a new lock was taken since the plan")
    ddb.delete_item(TableName="tf-locks", Key={"LockID": {"S": planned.state_path}})
    assert remove_table_lock(account, planned, "dataplatform-ops:keep").status == "done"  # gone: nothing to do


def test_md5_of_a_state_comes_from_its_etag_or_its_bytes(iac_world):
    from rules.iac_state import StateObject
    from tasks.aws.clients import Account
    from tasks.aws.iac import state_md5

    creds, _ = iac_world
    account = Account(AwsCredentials.load(creds))
    s3 = boto3.client("s3", region_name="us-east-1")
    body = _network_state(99)
    s3.put_object(Bucket="acme-tfstate", Key="kms/terraform.tfstate", Body=body, ServerSideEncryption="aws:kms")
    plain = StateObject("acme-tfstate", "apps/api/terraform.tfstate", "terraform", 0, None, region="us-east-1")
    kms = StateObject("acme-tfstate", "kms/terraform.tfstate", "terraform", 0, None, region="us-east-1")
    stored = s3.get_object(Bucket="acme-tfstate", Key="apps/api/terraform.tfstate")["Body"].read()
    assert state_md5(account, plain) == md5(stored)  # from the ETag (single part, no KMS)
    assert state_md5(account, kms) == md5(body)  # computed: a KMS object's ETag is not its MD5


@scenario_for("iac-health")
def least_privilege_scenario(iac_world):
    from flows.iac_health import iac_health

    creds, _ = iac_world
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    table_lock = f"dynamodb:tf-locks/acme-tfstate/{PROD}"
    lock_file = "s3://acme-tfstate/apps/api/terraform.tfstate.tflock"

    def state():
        item = ddb.get_item(TableName="tf-locks", Key={"LockID": {"S": f"acme-tfstate/{PROD}"}}).get("Item")
        files = {o["Key"] for o in s3.list_objects_v2(Bucket="acme-tfstate").get("Contents", [])}
        return {table_lock: item is not None, lock_file: "apps/api/terraform.tfstate.tflock" in files}

    return Scenario(iac_health, creds, dict(backends=BACKENDS, regions=REGIONS, now=NOW),
                    {rid for _, rid, _ in EXPECTED}, drop="dynamodb:Scan", approve=[table_lock, lock_file],
                    withhold="dynamodb:DeleteItem", withheld={table_lock}, state=state)
