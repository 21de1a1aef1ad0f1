"""s3-intelligent-tiering: add a lifecycle transition to INTELLIGENT_TIERING where it pays."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import load_store
from rules.pricing import BUNDLED
from rules.tiering import TieringPolicy, review_buckets
from tasks.approval import approved_ids
from tasks.aws.clients import Account, error_summary
from tasks.aws.s3 import list_buckets
from tasks.aws.s3_usage import add_tiering_rules, bucket_usage
from tasks.notify import on_flow_failure
from tasks.tell import tell

JOB = "s3-intelligent-tiering"


@flow(name=JOB, on_failure=[on_flow_failure])
def s3_intelligent_tiering(
    policy: TieringPolicy = TieringPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    aws_credentials: str = "aws",
    store: str = "ops-store",
    apply: bool = False,
    approved: list[str] | None = None,
    approval_timeout_seconds: int = 3600,
    now: datetime | None = None,
) -> list:
    """Recommend the transition per bucket; with `apply=True` add it to the buckets listed in
    `approved` (when omitted the run pauses and asks), merging with their existing rules."""
    ops_store = load_store(store)
    account = Account(load_block(AwsCredentials, aws_credentials, "aws_credentials"))
    now = now or datetime.now(timezone.utc)

    buckets = list_buckets(account)
    usage, errors = {}, {}
    for region in sorted({b.region for b in buckets}):
        try:
            usage |= bucket_usage(account, region, [b for b in buckets if b.region == region], now,
                                  policy.sample_pages)
        except Exception as exc:  # one region failing does not sink the others
            errors[region] = error_summary(exc)
    findings, changes = review_buckets(buckets, usage, policy, BUNDLED)

    if apply:
        ok = approved_ids([c.bucket for c in changes], approved, approval_timeout_seconds)
        changes = [c for c in changes if c.bucket in ok]
    add_tiering_rules(account, changes, ops_store, JOB, now, apply)
    tell(JOB, findings, ops_store, now, repeat_interval=timedelta(days=7), errors=errors)
    return findings
