"""waste-checks' S3 checks on moto, in two regions: stale multipart uploads, noncurrent versions
nobody expires, buckets with no lifecycle rule; and the lifecycle rules a person approves.

Planted: uploads and versions of a few MiB (their exact bytes are asserted; the $ follows from
the bundled $0.023 per GB-month, so the report's $1 floor is set to 0 here); look-alikes that are
not waste: a bucket whose lifecycle already aborts uploads, one whose lifecycle expires noncurrent
versions, an opted-out bucket.

moto gap: ListMultipartUploads answers a fixed `Initiated` (2010-11-10) for every upload, so
every planted upload is old; the young-upload trap is tested on the rule
(`test_an_upload_is_stale_after_multipart_min_age_days`).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import boto3
from moto.core import DEFAULT_ACCOUNT_ID

from deployments.iam import flow_actions
from flows.waste_checks import JOB, waste_checks
from rules.pricing import BUNDLED, s3_monthly
from rules.waste import WastePolicy
from tasks.aws.waste.s3 import ABORT_RULE_ID, NONCURRENT_RULE_ID
from tests.approvals import run_and_answer
from tests.least_privilege import iam_user_with
from tests.waste.test_waste_flow import KEEP, creds  # noqa: F401 - a fixture

MIB = 1024**2
NOW = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=10)
S3_KINDS = ["s3-incomplete-multipart-uploads", "s3-noncurrent-versions-kept", "s3-bucket-without-lifecycle"]
POLICY = WastePolicy(checks=S3_KINDS, min_monthly_usd=0)
EXPIRE_TMP = {"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}


def _bucket(name: str, region: str = "us-east-1", rules: list | None = None, tags: list | None = None):
    s3 = boto3.client("s3", region_name=region)
    extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **extra)
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    if tags:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
    return s3


def _upload(s3, bucket: str, key: str, *part_sizes: int) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    for number, size in enumerate(part_sizes, 1):
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=b"x" * size)


def plant_buckets() -> None:
    landing = _bucket("raw-landing")  # no lifecycle: two stale uploads, 5 + 5 + 1 MiB
    _upload(landing, "raw-landing", "events/2026-10-01.parquet", 5 * MIB, 5 * MIB)
    _upload(landing, "raw-landing", "events/2026-10-02.parquet", 1 * MIB)
    curated = _bucket("curated-data", rules=[{"ID": "abort-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                                               "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}}])
    _upload(curated, "curated-data", "orders/part-0.parquet", 5 * MIB)  # lifecycle aborts it: not waste
    versioned = _bucket("versioned-models", rules=[EXPIRE_TMP])  # expires tmp/ but keeps every old version
    versioned.put_bucket_versioning(Bucket="versioned-models", VersioningConfiguration={"Status": "Enabled"})
    for size in (2 * MIB, 3 * MIB, 1 * MIB):  # two noncurrent versions: 2 + 3 MiB
        versioned.put_object(Bucket="versioned-models", Key="model.bin", Body=b"m" * size)
    expiring = _bucket("versioned-expiring", rules=[{"ID": "noncurrent-30d", "Status": "Enabled", "Filter": {},
                                                     "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}])
    expiring.put_bucket_versioning(Bucket="versioned-expiring", VersioningConfiguration={"Status": "Enabled"})
    for _ in range(3):
        expiring.put_object(Bucket="versioned-expiring", Key="k", Body=b"v" * MIB)
    kept = _bucket("kept-scratch", tags=[KEEP])
    _upload(kept, "kept-scratch", "x", 5 * MIB)
    _bucket("eu-archive", region="eu-west-1")  # no lifecycle, in the other region


def test_s3_checks_find_the_planted_waste_per_region_with_exact_bytes(creds, store):  # noqa: F811
    plant_buckets()
    result = waste_checks(policy=POLICY, regions=["us-east-1", "eu-west-1"], aws_credentials=creds,
                          store=store._block_document_name, now=NOW)
    assert result.errors == {}
    found = {(f.scope.split("/")[1], f.kind, f.resource_id): f for f in result.findings}
    assert set(found) == {
        ("us-east-1", "s3-incomplete-multipart-uploads", "s3://raw-landing/#multipart"),
        ("us-east-1", "s3-noncurrent-versions-kept", "s3://versioned-models/#noncurrent"),
        ("us-east-1", "s3-bucket-without-lifecycle", "s3://raw-landing/"),
        ("eu-west-1", "s3-bucket-without-lifecycle", "s3://eu-archive/"),
    }
    uploads = found[("us-east-1", "s3-incomplete-multipart-uploads", "s3://raw-landing/#multipart")]
    assert (uploads.numbers["uploads"], uploads.numbers["bytes_by_class"]) == (2, {"STANDARD": 11 * MIB})
    assert uploads.monthly_cost_usd == s3_monthly(BUNDLED, "us-east-1", "STANDARD", 11 * MIB).usd
    versions = found[("us-east-1", "s3-noncurrent-versions-kept", "s3://versioned-models/#noncurrent")]
    assert (versions.numbers["versions"], versions.numbers["bytes_by_class"]) == (2, {"STANDARD": 5 * MIB})
    assert {o.item_id: o.action for o in result.offers} == {
        "s3://raw-landing/#multipart": "add-abort-multipart-rule",
        "s3://versioned-models/#noncurrent": "add-noncurrent-expiration-rule"}


def _rules(bucket: str) -> dict[str, dict]:
    return {r["ID"]: r for r in boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}


def test_approved_lifecycle_rules_are_merged_in_and_the_findings_resolve(creds, store):  # noqa: F811
    plant_buckets()
    params = dict(policy=POLICY, regions=["us-east-1"], aws_credentials=creds, store=store._block_document_name)
    state = run_and_answer(waste_checks, {"approved": ["s3://raw-landing/#multipart",
                                                       "s3://versioned-models/#noncurrent"]}, apply=True, now=NOW,
                           **params)
    assert state.is_completed(), state.message
    assert _rules("raw-landing") == {ABORT_RULE_ID: {
        "ID": ABORT_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}}
    models = _rules("versioned-models")
    assert models["expire-tmp"] == EXPIRE_TMP  # the bucket's own rule is kept
    assert models[NONCURRENT_RULE_ID]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert {(a["resource_id"], a["outcome"]) for a in JOB_actions(store)} == {
        ("s3://raw-landing/#multipart", "done"), ("s3://versioned-models/#noncurrent", "done")}

    # The uploads and versions are still there (S3 runs lifecycle rules later), but now a rule
    # handles them: their findings resolve, and raw-landing has a lifecycle rule now.
    result = waste_checks(now=NOW + timedelta(hours=1), **params)
    assert {f.resource_id for f in result.findings} == set()
    assert {f["resource_id"] for f in store.findings_of(JOB, "resolved")} == {
        "s3://raw-landing/#multipart", "s3://versioned-models/#noncurrent", "s3://raw-landing/"}


def JOB_actions(store) -> list[dict]:  # noqa: N802 - reads as "the job's actions"
    return store.actions_of(JOB)


def test_a_bucket_that_cannot_be_read_is_a_gap_for_that_bucket_only(creds, store):  # noqa: F811
    plant_buckets()
    waste_checks(policy=POLICY, regions=["us-east-1"], aws_credentials=creds, store=store._block_document_name,
                 now=NOW)
    read_only = flow_actions(sys.modules[waste_checks.fn.__module__], read_only=True)
    deny = {"Action": "s3:ListBucketMultipartUploads", "Resource": "arn:aws:s3:::raw-landing"}
    with iam_user_with(read_only, denied=[deny]) as limited:
        result = waste_checks(policy=POLICY, regions=["us-east-1"], aws_credentials=limited,
                              store=store._block_document_name, now=NOW + timedelta(hours=1))
    [(where, why)] = result.errors.items()
    assert where == f"{DEFAULT_ACCOUNT_ID}/us-east-1 s3-incomplete-multipart-uploads s3://raw-landing/"
    assert "(needs s3:ListBucketMultipartUploads)" in why
    assert {f.resource_id for f in result.findings} == {"s3://versioned-models/#noncurrent", "s3://raw-landing/"}
    # The uploads of raw-landing were not read this time: their finding stays open.
    assert store.findings_of(JOB, "resolved") == []
