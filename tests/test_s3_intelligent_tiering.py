"""s3-intelligent-tiering: the estimate (pure) and the flow on moto: exact findings, merge, approval."""

import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from rules.tiering import RULE_ID, TieringPolicy, small_object_shares
from tests.approvals import run_and_answer
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

GIB = 1024**3
OLD_RULE = {"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}


def test_small_object_shares():
    assert small_object_shares([1024, 1024, 200 * 1024, 200 * 1024]) == (0.5, 2048 / (2048 + 400 * 1024))
    assert small_object_shares([]) == (0.0, 0.0)


@pytest.fixture
def planted_buckets(aws):
    """Two 5,000 GiB buckets (one opted out, one with a lifecycle rule) and a small one; -> (creds block, now)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    s3 = boto3.client("s3", region_name="us-east-1")
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for name, gib in (("analytics-raw", 5000), ("team-archive", 5000), ("tiny-bucket", 10)):
        s3.create_bucket(Bucket=name)
        for i in range(8):
            s3.put_object(Bucket=name, Key=f"big/{i}", Body=b"x" * 200 * 1024)
        for i in range(2):
            s3.put_object(Bucket=name, Key=f"small/{i}", Body=b"x" * 1024)
        for metric, storage, value in (("BucketSizeBytes", "StandardStorage", gib * GIB),
                                       ("NumberOfObjects", "AllStorageTypes", 1_000_000)):
            cw.put_metric_data(Namespace="AWS/S3", MetricData=[{
                "MetricName": metric, "Timestamp": now - timedelta(days=1), "Value": value,
                "Dimensions": [{"Name": "BucketName", "Value": name}, {"Name": "StorageType", "Value": storage}]}])
    s3.put_bucket_lifecycle_configuration(Bucket="analytics-raw", LifecycleConfiguration={"Rules": [OLD_RULE]})
    s3.put_bucket_tagging(Bucket="team-archive", Tagging={"TagSet": [{"Key": "dataplatform-ops:keep", "Value": "y"}]})
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return creds, now


def test_flow_recommends_merges_and_applies_only_approved(planted_buckets, store):
    from flows.s3_intelligent_tiering import s3_intelligent_tiering

    creds, now = planted_buckets
    s3 = boto3.client("s3", region_name="us-east-1")
    policy = TieringPolicy(archive_access_days=90)
    kw = dict(policy=policy, aws_credentials=creds, store=store._block_document_name, now=now)

    findings = s3_intelligent_tiering(**kw).findings
    # 5000 GiB, 0.125% of bytes in small objects; half goes cold at $0.0105/GB less;
    # 800,000 monitored objects at $0.0025 per 1,000.
    eligible_gb = 5000 * (1 - 2048 / (2048 + 8 * 200 * 1024))
    net = eligible_gb * 0.5 * (0.023 - 0.0125) - 800 * 0.0025
    assert {f.resource_id: f.monthly_cost_usd for f in findings} == pytest.approx(
        {"analytics-raw": net, "team-archive": net}, rel=0.01)
    assert "20% of objects under 128 KB" in findings[0].reason
    assert "opt-out tag" in {f.resource_id: f for f in findings}["team-archive"].reason

    # Resume with nothing selected: nothing changes.
    assert run_and_answer(s3_intelligent_tiering, {"approved": []}, apply=True, **kw).is_completed()
    assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="analytics-raw")["Rules"]] == ["expire-tmp"]

    # The opt-out bucket is never offered; the person approves the other one.
    assert run_and_answer(s3_intelligent_tiering, {"approved": ["analytics-raw"]}, apply=True, **kw).is_completed()
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="analytics-raw")["Rules"]}
    assert set(rules) == {"expire-tmp", RULE_ID}
    assert rules[RULE_ID]["Transitions"] == [{"Days": 0, "StorageClass": "INTELLIGENT_TIERING"}]
    # (moto 5.2.5 drops the ObjectSizeGreaterThan filter on the way back; real S3 keeps it.)
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket="team-archive")  # opt-out respected

    assert s3_intelligent_tiering(apply=True, **kw).offers == []  # applied: nothing left to offer
    done = [a for a in store.actions_of("s3-intelligent-tiering") if a["outcome"] == "done"]
    assert [a["resource_id"] for a in done] == ["analytics-raw"]  # the second apply changed nothing
    assert done[0]["detail"] == f"rule {RULE_ID} added, archive tiers set"
    assert "(already applied)" in {f.resource_id: f for f in findings_after(kw)}["analytics-raw"].reason


def findings_after(kw):
    from flows.s3_intelligent_tiering import s3_intelligent_tiering

    return s3_intelligent_tiering(**kw).findings


def test_least_privilege_policy():
    import flows.s3_intelligent_tiering as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    read = flow_actions(module, read_only=True)
    assert read == {"s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetLifecycleConfiguration",
                    "s3:GetBucketTagging", "s3:ListBucket", "cloudwatch:GetMetricData",
                    "pricing:GetProducts"} | TARGETS
    assert flow_actions(module) - read == {"s3:PutLifecycleConfiguration", "s3:PutIntelligentTieringConfiguration"}


@scenario_for("s3-intelligent-tiering")
def least_privilege_scenario(planted_buckets):
    from flows.s3_intelligent_tiering import s3_intelligent_tiering
    from tests.idle.test_idle_flow import _rule_ids

    creds, now = planted_buckets
    buckets = ("analytics-raw", "team-archive", "tiny-bucket")
    return Scenario(s3_intelligent_tiering, creds,
                    dict(policy=TieringPolicy(archive_access_days=90), now=now), {"analytics-raw", "team-archive"},
                    drop="s3:ListBucket", approve=["analytics-raw"], withhold="s3:PutLifecycleConfiguration",
                    withheld={"analytics-raw"}, state=lambda: {b: _rule_ids(b) for b in buckets})
