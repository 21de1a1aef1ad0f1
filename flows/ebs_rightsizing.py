"""ebs-rightsizing: gp2 -> gp3, over-provisioned io1/io2, near-idle volumes, shrink plans."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.rightsizing import EbsPolicy, review_volumes, shrink_plan_markdown
from tasks.approval import Offer
from tasks.aws.ebs import disk_usage, modify_volumes, volume_activity, volume_modifications
from tasks.aws.ec2 import list_volumes
from tasks.aws.pricing import refreshed_prices
from tasks.report import artifact_key
from tasks.runner import Action, AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "ebs-rightsizing"


def collect(target: AwsTarget, policy: EbsPolicy, ctx: RunContext) -> tuple:
    account, region = target.account, target.region
    start = ctx.now - timedelta(days=policy.lookback_days)
    volumes = [v for v in list_volumes(account, region) if v.state in ("in-use", "available")]
    attached = [v for v in volumes if v.attached_to]
    return (volumes, volume_activity(account, region, attached, start, ctx.now),
            disk_usage(account, region, attached, start, ctx.now), volume_modifications(account, region))


def judge(target: AwsTarget, read: tuple, policy: EbsPolicy, ctx: RunContext) -> Judgement:
    volumes, activity, usage, modifications = read
    review = review_volumes(volumes, activity, usage, modifications, policy, ctx.prices, ctx.now)
    offers = [Offer(c.volume_id, target.scope, c.kind, c.saving,
                    c.blocked or f"{c.kind}: {c.modify_kwargs()}", eligible=not c.blocked, payload=c)
              for c in review.changes]
    return Judgement(findings=review.findings, offers=offers, details=review.shrinks)


def apply_changes(target: AwsTarget, offers: list[Offer], ctx: RunContext) -> list[dict[str, Any]]:
    outcomes = modify_volumes(target.account, target.region, [o.payload for o in offers], ctx.store, JOB,
                              ctx.now, True)
    return [{"action": o.action, "resource": o.item_id, "outcome": outcomes[o.item_id]} for o in offers]


def write_shrink_plan(judged: Judgement, policy: EbsPolicy, ctx: RunContext) -> None:
    if judged.details:
        create_markdown_artifact(key=artifact_key(JOB, "shrink-plan"), markdown=shrink_plan_markdown(judged.details),
                                 description=f"{JOB}: how to move {len(judged.details)} volumes to smaller ones")


CONTRACT = Job(name=JOB, policy=EbsPolicy, service="ec2", collect=collect, judge=judge,
          act=Action(apply=apply_changes), after=write_shrink_plan, prices=refreshed_prices)


@job_flow(CONTRACT)
def ebs_rightsizing(
    policy: EbsPolicy = EbsPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Find cheaper EBS settings. With `apply=True`, the ModifyVolume changes a person approves
    (the run pauses and asks; nothing is pre-selected) are made.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now)
