"""How much a bucket stores and in what sizes: CloudWatch storage metrics plus an object sample."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from prefect import task

from blocks.store import OpsStore
from rules.tiering import BucketUsage, TieringChange, small_object_shares
from tasks.aws.clients import Account, error_summary
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.permissions import requires
from tasks.aws.s3 import Bucket, iter_objects, put_lifecycle_rule


@task(name="bucket-usage")
@requires("cloudwatch:GetMetricData", "s3:ListBucket")
def bucket_usage(account: Account, region: str, buckets: Sequence[Bucket], end: datetime,
                 sample_pages: int) -> dict[str, BucketUsage]:
    """STANDARD bytes and object count per bucket (S3's daily storage metrics, last 3 days) and
    the small-object shares from at most `sample_pages` pages of objects per bucket."""
    if not buckets:
        return {}
    queries = []
    for n, b in enumerate(buckets):
        queries += [MetricQuery(f"std{n}", "AWS/S3", "BucketSizeBytes",
                                {"BucketName": b.name, "StorageType": "StandardStorage"}, "Average", 86400),
                    MetricQuery(f"obj{n}", "AWS/S3", "NumberOfObjects",
                                {"BucketName": b.name, "StorageType": "AllStorageTypes"}, "Average", 86400)]
    data = get_metric_data(account.client("cloudwatch", region), queries, end - timedelta(days=3), end)
    usage = {}
    for n, b in enumerate(buckets):
        std, objects = data.values(f"std{n}"), data.values(f"obj{n}")
        if not std:
            continue
        sizes = (o.get("Size", 0) for o in iter_objects(account, b.name, region, max_pages=sample_pages))
        count_share, bytes_share = small_object_shares(sizes)
        usage[b.name] = BucketUsage({"STANDARD": std[-1]}, objects[-1] if objects else 0.0, count_share, bytes_share)
    return usage


@task(name="add-tiering-rules")
@requires("s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration",
          "s3:PutIntelligentTieringConfiguration", write=True)
def add_tiering_rules(account: Account, changes: Sequence[TieringChange], store: OpsStore, job: str,
                      now: datetime, apply: bool) -> dict[str, str]:
    """Merge the transition rule into each approved bucket's lifecycle (existing rules kept)."""
    outcomes = {}
    for c in changes:
        if not apply:
            outcome, detail = "planned", "would add lifecycle rule " + c.rule["ID"]
        else:
            try:
                result = put_lifecycle_rule(account, c.bucket, c.region, c.rule)
                if c.archive:  # PUT by Id replaces the same configuration: idempotent
                    account.client("s3", c.region).put_bucket_intelligent_tiering_configuration(
                        Bucket=c.bucket, Id=c.archive["Id"], IntelligentTieringConfiguration=c.archive)
                    result += ", archive tiers set"
                outcome, detail = ("skipped" if result == "unchanged" else "done"), f"rule {c.rule['ID']} {result}"
            except Exception as exc:  # one bucket failing does not stop the others
                outcome, detail = "failed", error_summary(exc)
        store.record_action(job, action="add-intelligent-tiering-rule", resource_id=c.bucket, scope=c.region,
                            dry_run=not apply, outcome=outcome, detail=detail, now=now)
        outcomes[c.bucket] = outcome
    return outcomes
