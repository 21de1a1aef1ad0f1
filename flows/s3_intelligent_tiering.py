"""s3-intelligent-tiering: add a lifecycle transition to INTELLIGENT_TIERING where it pays."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect_aws.credentials import AwsCredentials  # noqa: F401 - the block this job loads

from blocks.store import OpsStore
from rules.tiering import TieringPolicy, review_buckets
from tasks.approval import Offer
from tasks.aws.clients import Account
from tasks.aws.pricing import refreshed_prices
from tasks.aws.s3 import list_buckets
from tasks.aws.s3_usage import add_tiering_rules, bucket_usage
from tasks.runner import Action, AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "s3-intelligent-tiering"

def collect_buckets(account: Account, policy: TieringPolicy, ctx: RunContext) -> list:
    return list_buckets(account)

def collect(target: AwsTarget, policy: TieringPolicy, ctx: RunContext) -> tuple[list, dict]:
    buckets = [b for b in target.shared if b.region == target.region]
    return buckets, bucket_usage(target.account, target.region, buckets, ctx.now, policy.sample_pages)

def judge(target: AwsTarget, read: tuple[list, dict], policy: TieringPolicy, ctx: RunContext) -> Judgement:
    findings, changes = review_buckets(*read, policy, ctx.prices)
    return Judgement(findings=findings, offers=[
        Offer(c.bucket, target.scope, "add-intelligent-tiering-rule", c.saving, f"lifecycle rule {c.rule['ID']}",
              payload=c) for c in changes])

def apply_rules(target: AwsTarget, offers: list[Offer], ctx: RunContext) -> list[dict[str, Any]]:
    outcomes = add_tiering_rules(target.account, [o.payload for o in offers], ctx.store, JOB, ctx.now, True)
    return [{"action": o.action, "resource": o.item_id, "outcome": outcomes[o.item_id]} for o in offers]

CONTRACT = Job(name=JOB, policy=TieringPolicy, service="s3", collect=collect, judge=judge,
          collect_account=collect_buckets, act=Action(apply=apply_rules), prices=refreshed_prices)

@job_flow(CONTRACT)
def s3_intelligent_tiering(
    policy: TieringPolicy = TieringPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Recommend the transition per bucket; with `apply=True`, add it to the buckets a person
    approves (the run pauses and asks), merging with their existing rules.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now)
