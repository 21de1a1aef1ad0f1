"""Waste listers and actions for S3: stale multipart uploads, noncurrent versions nobody expires,
buckets with no lifecycle rule. The account's bucket list is read once (the runner's account
step); here, per region, each bucket of that region. One page budget (`s3_max_pages`) is shared
by every S3 listing of the region; a bucket that cannot be read is a gap for that bucket only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rules.config import opted_out
from rules.waste import Resource, WastePolicy, lifecycle_rule_for, stale_upload
from tasks.aws.actions import Outcome
from tasks.aws.clients import Account, PageCounter, error_summary, paginate
from tasks.aws.permissions import requires
from tasks.aws.s3 import Bucket, put_lifecycle_rule
from tasks.aws.waste.scan import Listing, Scan

ABORT_RULE_ID = "dataplatform-ops-abort-multipart"
NONCURRENT_RULE_ID = "dataplatform-ops-expire-noncurrent"


def resource_id(bucket: str, part: str = "") -> str:
    """`s3://bucket/` (a gap on the bucket hides all of its findings), with `#part` per check."""
    return f"s3://{bucket}/" + (f"#{part}" if part else "")


def _region_pages(scan: Scan) -> PageCounter:
    """The region's one S3 page counter (made once per target through `scan.once`)."""
    return PageCounter()


def _pages(scan: Scan) -> PageCounter:
    return scan.once(_region_pages)


class _Tally:
    def __init__(self) -> None:
        self.count, self.bytes_by_class, self.oldest = 0, {}, None

    def add(self, size: int, storage_class: str | None, when: datetime) -> None:
        self.count += 1
        key = storage_class or "STANDARD"
        self.bytes_by_class[key] = self.bytes_by_class.get(key, 0) + size
        self.oldest = when if self.oldest is None or when < self.oldest else self.oldest


def _per_bucket(scan: Scan, read_one: Any) -> Listing:
    """`read_one(s3, bucket, pages)` for every bucket of the region; errors become per-bucket gaps."""
    listing, pages = Listing([]), _pages(scan)
    for bucket in scan.buckets or []:
        if pages.truncated:
            listing.gaps.append((f"page budget ({scan.policy.s3_max_pages} pages) spent before this bucket",
                                 resource_id(bucket.name)))
            continue
        try:
            found = read_one(scan.client("s3"), bucket, pages)
        except ClientError as exc:  # one bucket denied or gone: the others go on
            listing.gaps.append((error_summary(exc), resource_id(bucket.name)))
            continue
        if found is not None:
            listing.resources.append(found)
    if pages.truncated:
        listing.notes.append(f"{scan.region}: S3 listings stopped at the page budget ({scan.policy.s3_max_pages} "
                             "pages); raise `s3_max_pages` for the rest")
    return listing


@requires("s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts")
def list_multipart_uploads(scan: Scan) -> Listing:
    """Per bucket: the multipart uploads older than `multipart_min_age_days` that no lifecycle
    rule aborts, with the bytes their parts hold (ListParts, only for those)."""
    budget = scan.policy.s3_max_pages

    def read_one(s3: Any, bucket: Bucket, pages: PageCounter) -> Resource:
        tally = _Tally()
        for upload in paginate(s3, "list_multipart_uploads", "Uploads", counter=pages, max_pages=budget,
                               Bucket=bucket.name):
            if (not stale_upload(upload["Initiated"], scan.policy, scan.now)
                    or lifecycle_rule_for(bucket.lifecycle_rules, upload["Key"], "AbortIncompleteMultipartUpload")):
                continue
            size = sum(part["Size"] for part in paginate(
                s3, "list_parts", "Parts", counter=pages, max_pages=budget, Bucket=bucket.name,
                Key=upload["Key"], UploadId=upload["UploadId"]))
            tally.add(size, upload.get("StorageClass"), upload["Initiated"])
        return Resource(id=resource_id(bucket.name, "multipart"), region=scan.region, tags=bucket.tags,
                        facts={"bucket": bucket.name, "uploads": tally.count, "bytes_by_class": tally.bytes_by_class,
                               "oldest": tally.oldest.isoformat() if tally.oldest else None,
                               "truncated": pages.truncated})

    return _per_bucket(scan, read_one)


@requires("s3:GetBucketVersioning", "s3:ListBucketVersions")
def list_noncurrent_versions(scan: Scan) -> Listing:
    """Per versioned bucket: the noncurrent versions no NoncurrentVersionExpiration rule covers."""
    budget = scan.policy.s3_max_pages

    def read_one(s3: Any, bucket: Bucket, pages: PageCounter) -> Resource | None:
        versioning = s3.get_bucket_versioning(Bucket=bucket.name).get("Status")
        if not versioning:  # never versioned: no noncurrent versions
            return None
        tally = _Tally()
        for version in paginate(s3, "list_object_versions", "Versions", counter=pages, max_pages=budget,
                                Bucket=bucket.name):
            if version.get("IsLatest") or lifecycle_rule_for(bucket.lifecycle_rules, version["Key"],
                                                             "NoncurrentVersionExpiration"):
                continue
            tally.add(version.get("Size", 0), version.get("StorageClass"), version["LastModified"])
        return Resource(id=resource_id(bucket.name, "noncurrent"), region=scan.region, tags=bucket.tags,
                        facts={"bucket": bucket.name, "versioning": versioning, "versions": tally.count,
                               "bytes_by_class": tally.bytes_by_class, "truncated": pages.truncated})

    return _per_bucket(scan, read_one)


def list_bucket_lifecycles(scan: Scan) -> list[Resource]:
    """The region's buckets with how many lifecycle rules they have (read with the bucket list)."""
    return [Resource(id=resource_id(b.name), region=scan.region, tags=b.tags,
                     facts={"bucket": b.name, "lifecycle_rules": len(b.lifecycle_rules)})
            for b in scan.buckets or []]


def _bucket_tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        raise


def _add_rule(account: Account, region: str, resource: Resource, policy: WastePolicy,
              rule: dict[str, Any], what: str) -> Outcome:
    bucket = resource.facts["bucket"]
    try:
        tags = _bucket_tags(account.client("s3", region), bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return Outcome("done", "bucket already gone")
        raise
    if opted_out(tags, policy.opt_out_tag):
        return Outcome("skipped", f"tagged {policy.opt_out_tag}")
    change = put_lifecycle_rule(account, bucket, region, rule)
    return Outcome("done", f"lifecycle rule {rule['ID']} {change}: {what}")


@requires("s3:GetBucketTagging", write=True)  # put_lifecycle_rule declares the rest
def add_abort_multipart_rule(account: Account, region: str, resource: Resource, policy: WastePolicy) -> Outcome:
    """A lifecycle rule that aborts uploads left incomplete (S3 then deletes their parts)."""
    days = policy.multipart_min_age_days
    rule = {"ID": ABORT_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days}}
    return _add_rule(account, region, resource, policy, rule, f"abort uploads after {days} days")


@requires("s3:GetBucketTagging", write=True)  # put_lifecycle_rule declares the rest
def add_noncurrent_expiration_rule(account: Account, region: str, resource: Resource,
                                   policy: WastePolicy) -> Outcome:
    """A lifecycle rule that deletes versions `noncurrent_days` after they stop being current."""
    days = policy.noncurrent_days
    rule = {"ID": NONCURRENT_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": days}}
    return _add_rule(account, region, resource, policy, rule, f"expire noncurrent versions after {days} days")
