"""ebs-rightsizing: gp2 -> gp3, over-provisioned io1/io2, near-idle volumes, shrink plans."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import load_store
from rules.pricing import BUNDLED
from rules.rightsizing import EbsPolicy, EbsReview, review_volumes, shrink_plan_markdown
from tasks.approval import approved_ids
from tasks.aws.clients import Account, error_summary
from tasks.aws.ebs import disk_usage, modify_volumes, volume_activity, volume_modifications
from tasks.aws.ec2 import list_volumes
from tasks.notify import on_flow_failure
from tasks.report import artifact_key
from tasks.tell import tell

JOB = "ebs-rightsizing"


@flow(name=JOB, on_failure=[on_flow_failure])
def ebs_rightsizing(
    policy: EbsPolicy = EbsPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] = ["us-east-1"],  # noqa: B006 - Prefect parameters are copied per run
    aws_credentials: str = "aws",
    store: str = "ops-store",
    apply: bool = False,
    approved: list[str] | None = None,
    approval_timeout_seconds: int = 3600,
    now: datetime | None = None,
) -> EbsReview:
    """Find cheaper EBS settings. With `apply=True`, the type/IOPS changes listed in `approved`
    (volume IDs; when omitted the run pauses and asks) are made with ModifyVolume."""
    ops_store = load_store(store)
    account = Account(load_block(AwsCredentials, aws_credentials, "aws_credentials"))
    now = now or datetime.now(timezone.utc)
    start = now - timedelta(days=policy.lookback_days)

    review, errors = EbsReview([], [], []), {}
    for region in regions:
        try:
            volumes = [v for v in list_volumes(account, region) if v.state in ("in-use", "available")]
            attached = [v for v in volumes if v.attached_to]
            part = review_volumes(volumes, volume_activity(account, region, attached, start, now),
                                  disk_usage(account, region, attached, start, now),
                                  volume_modifications(account, region), policy, BUNDLED, now)
        except Exception as exc:  # one region failing does not sink the others
            errors[region] = error_summary(exc)
            continue
        review.findings += part.findings
        review.changes += part.changes
        review.shrinks += part.shrinks

    if apply:
        ok = approved_ids([c.volume_id for c in review.changes if not c.blocked], approved,
                          approval_timeout_seconds)
        todo = [c for c in review.changes if c.blocked or c.volume_id in ok]
    else:
        todo = review.changes
    for region in sorted({c.region for c in todo}):
        modify_volumes(account, region, [c for c in todo if c.region == region], ops_store, JOB, now, apply)

    if review.shrinks:
        create_markdown_artifact(key=artifact_key(JOB, "shrink-plan"), markdown=shrink_plan_markdown(review.shrinks),
                                 description=f"{JOB}: how to move {len(review.shrinks)} volumes to smaller ones")
    tell(JOB, review.findings, ops_store, now, repeat_interval=timedelta(days=7), errors=errors)
    return review
