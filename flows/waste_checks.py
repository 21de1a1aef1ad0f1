"""Flow `waste-checks`: the catalogue of waste checks (`tasks/aws/waste/CHECKS`) over every
account x region, each finding priced per month; with `apply=True`, the changes a check offers
(a log retention, ...) go through the one approval path.

Per account: the bucket list (for the S3 checks); per account x region: every enabled check's
lister, one after another in one task run. Judged by `rules/waste.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.runtime import flow_run as runtime_flow_run
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.waste import RULES, WastePolicy, judge_rule, metric_rows
from tasks.aws.clients import Account
from tasks.aws.pricing import refreshed_prices
from tasks.aws.s3 import list_buckets
from tasks.aws.waste import ACCOUNT_KINDS, Read, Scan, apply_offers, offers_for, scan_region
from tasks.runner import (
    Action,
    AwsTarget,
    Job,
    Judgement,
    Partial,
    RunContext,
    RunResult,
    job_flow,
    run_aws,
)

JOB = "waste-checks"


def collect_buckets(account: Account, policy: WastePolicy, ctx: RunContext) -> list:
    return list_buckets(account) if any(policy.runs(k) for k in ACCOUNT_KINDS) else []


def collect(target: AwsTarget, policy: WastePolicy, ctx: RunContext) -> Read | Partial:
    buckets = None if target.shared is None else [b for b in target.shared if b.region == target.region]
    open_kinds = {key.split("|", 2)[0] for key in ctx.first_seen if key.split("|", 2)[1] == target.scope}
    read = scan_region(Scan(target.account, target.region, policy, ctx.now, buckets), open_kinds)
    return Partial(read, read.gaps) if read.gaps else read


def judge(target: AwsTarget, read: Read, policy: WastePolicy, ctx: RunContext) -> Judgement:
    findings, offers = [], []
    for kind, resources in read.resources.items():
        found = judge_rule(RULES[kind], resources, target.scope, policy, ctx.prices, ctx.now)
        findings += found
        offers += offers_for(kind, found, resources, target.scope)
    return Judgement(findings=findings, offers=offers, notes=read.notes,
                     metrics=metric_rows(findings, target.scope, read.resources, ctx.now))


def act(target: AwsTarget, offers: list, ctx: RunContext) -> list[dict[str, Any]]:
    flow_run_id = str(runtime_flow_run.id) if runtime_flow_run.id else None
    return apply_offers(target.account, target.region, offers, ctx.options["policy"], JOB, ctx.store, ctx.now,
                        flow_run_id)


CONTRACT = Job(name=JOB, policy=WastePolicy, service="ec2", collect=collect, judge=judge, act=Action(apply=act),
               collect_account=collect_buckets, account_kinds=ACCOUNT_KINDS, prices=refreshed_prices)


@job_flow(CONTRACT)
def waste_checks(
    policy: WastePolicy = WastePolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Run the waste checks; with `apply=True`, make the changes a person approves.

    Args:
        policy: Which checks run, their thresholds, the opt-out tag and the approval timeout.
        regions: Regions to check; unset means every region enabled for each account.
        role_arns: Roles to assume, one per account, besides the credentials' own account.
        aws_credentials: Name of the prefect-aws `AwsCredentials` block.
        store: Name of the `OpsStore` block.
        apply: Publish a plan, pause for approval, then act on the approved items only.
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now, options={"policy": policy})
