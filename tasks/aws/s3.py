"""S3 collectors and the one lifecycle writer (merging, never dropping existing rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from prefect import task

from tasks.aws.clients import Account, paginate
from tasks.aws.permissions import requires


@dataclass(frozen=True)
class Bucket:
    name: str
    region: str
    lifecycle_rules: tuple[dict[str, Any], ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def _region_of(s3: Any, name: str) -> str:
    # GetBucketLocation answers None for us-east-1.
    return s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"


def _lifecycle(s3: Any, name: str) -> tuple[dict[str, Any], ...]:
    try:
        return tuple(s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
            return ()
        raise


def _tags(s3: Any, name: str) -> dict[str, str]:
    try:
        return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        raise


@task(name="list-buckets")
@requires("s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetLifecycleConfiguration",
          "s3:GetBucketTagging")
def list_buckets(account: Account) -> list[Bucket]:
    """Every bucket with its region, lifecycle rules and tags (S3 is global: one task run)."""
    s3 = account.client("s3")
    buckets = []
    for b in s3.list_buckets()["Buckets"]:
        name = b["Name"]
        buckets.append(Bucket(name, _region_of(s3, name), _lifecycle(s3, name), _tags(s3, name)))
    return buckets


@requires("s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration", write=True)
def put_lifecycle_rule(account: Account, bucket: str, region: str, rule: dict[str, Any]) -> str:
    """Add or replace one rule by ID, keeping every other rule. Returns `added`,
    `replaced` or `unchanged` (idempotent: the same rule twice changes nothing)."""
    s3 = account.client("s3", region)
    rules = list(_lifecycle(s3, bucket))
    existing = next((r for r in rules if r.get("ID") == rule["ID"]), None)
    if existing == rule:
        return "unchanged"
    merged = [r for r in rules if r.get("ID") != rule["ID"]] + [rule]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": merged})
    return "replaced" if existing else "added"


@requires("s3:ListBucket")
def iter_objects(account: Account, bucket: str, region: str, prefix: str = "", counter=None,
                 max_pages: int | None = None):
    """Objects of a bucket (Key, Size, LastModified, StorageClass), page-budgeted."""
    s3 = account.client("s3", region)
    yield from paginate(s3, "list_objects_v2", "Contents", counter=counter, max_pages=max_pages,
                        Bucket=bucket, Prefix=prefix)

