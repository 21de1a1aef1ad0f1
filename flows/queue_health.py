"""queue-health: dead-letter queues with messages and source queues whose backlog is getting old.

Per account x region: queues with redrive policies and depths, then the age of the oldest
message from CloudWatch in batches of 500; judged by `rules.queue_health`. A drained
dead-letter queue resolves its finding.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.queue_health import QueuePolicy, judge_queues, metric_rows
from tasks.aws.sqs import get_oldest_message_ages, list_queues
from tasks.runner import AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "queue-health"


def collect(target: AwsTarget, policy: QueuePolicy, ctx: RunContext) -> tuple[list, dict]:
    end = ctx.now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=policy.metric_lookback_minutes)
    queues = list_queues(target.account, target.region, ctx.options["name_prefix"])
    ages, _ = get_oldest_message_ages(target.account, target.region, [q.name for q in queues], start, end)
    return queues, ages


def judge(target: AwsTarget, read: tuple[list, dict], policy: QueuePolicy, ctx: RunContext) -> Judgement:
    queues, ages = read
    return Judgement(findings=judge_queues(queues, ages, policy, target.scope),
                     metrics=metric_rows(queues, ages, target.scope, ctx.now))


def notes(read: list[tuple[AwsTarget, tuple]], policy: QueuePolicy, ctx: RunContext) -> list[str]:
    return [f"{sum(len(q) for _, (q, _) in read)} queues in {len(read)} regions"]


CONTRACT = Job(name=JOB, policy=QueuePolicy, service="sqs", collect=collect, judge=judge, notes=notes)


@job_flow(CONTRACT)
def queue_health(
    policy: QueuePolicy = QueuePolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    name_prefix: str = "",
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Judge every queue whose name starts with `name_prefix`.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now, options={"name_prefix": name_prefix})
