"""graviton-trial: EC2, RDS and Lambda moved to Graviton, before vs after: realised $/month and
performance regressions. Report only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.graviton_trial import (
    ADVISOR_JOB,
    Move,
    Resource,
    TrialPolicy,
    due,
    find_moves,
    judge_trials,
    metric_span,
    resolved_advice,
)
from tasks.aws.compute import list_db_instances
from tasks.aws.ec2 import list_instances
from tasks.aws.graviton_metrics import before_after_metrics
from tasks.aws.lambda_ import list_functions
from tasks.aws.pricing import refreshed_prices
from tasks.runner import AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "graviton-trial"


@dataclass
class Read:
    moves: list[Move]
    notes: list[str]
    series: dict


def collect(target: AwsTarget, policy: TrialPolicy, ctx: RunContext) -> Read:
    account, region = target.account, target.region
    resources = [
        *(Resource("ec2", i.instance_id, region, i.instance_type, i.tags)
          for i in list_instances(account, region) if i.state == "running"),
        *(Resource("rds", d.db_id, region, d.db_class, d.tags, multi_az=d.multi_az)
          for d in list_db_instances(account, region)),
        *(Resource("lambda", f.name, region, f.architectures[0], f.tags, memory_mb=f.memory_mb)
          for f in list_functions(account, region)),
    ]
    advice = resolved_advice(ctx.store.findings_of(ADVISOR_JOB, status="resolved"), target.scope)
    moves, notes = find_moves(resources, advice)
    ready = [m for m in moves if due(m, policy, ctx.now)]
    series = before_after_metrics(account, region, [(m.resource.service, m.resource.resource_id) for m in ready],
                                  *metric_span(ready, policy)) if ready else {}
    return Read(moves, notes, series)


def judge(target: AwsTarget, read: Read, policy: TrialPolicy, ctx: RunContext) -> Judgement:
    findings, notes, trials = judge_trials(read.moves, read.series, ctx.prices, policy, ctx.now)
    return Judgement(findings=findings, notes=[*read.notes, *notes], details=trials)


CONTRACT = Job(name=JOB, policy=TrialPolicy, service="ec2", collect=collect, judge=judge,
               prices=refreshed_prices)


@job_flow(CONTRACT)
def graviton_trial(
    policy: TrialPolicy = TrialPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Compare resources moved to Graviton before and after the move. Report only: nothing is changed.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now)
