"""lambda-health: erroring, throttled and timing-out Lambda functions, within minutes.

Per account x region: the function list with tags, GetMetricData in batches of 500, and
'Task timed out' log lines for the functions with errors; judged by `rules.lambda_health`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.lambda_health import (
    LambdaFunction,
    LambdaPolicy,
    judge_functions,
    log_scan_candidates,
    metric_rows,
)
from tasks.aws.clients import error_summary
from tasks.aws.lambda_ import count_timeout_lines, get_lambda_metrics, list_functions
from tasks.runner import (
    AwsTarget,
    Job,
    Judgement,
    Partial,
    RunContext,
    RunResult,
    job_flow,
    run_aws,
)

JOB = "lambda-health"


@dataclass
class Read:
    functions: list[LambdaFunction]
    metrics: dict
    timed_out: dict[str, int]
    calls: int


def collect(target: AwsTarget, policy: LambdaPolicy, ctx: RunContext) -> Read | Partial:
    start, end = policy.window(ctx.now)
    functions = list_functions(target.account, target.region, ctx.options["name_prefix"],
                               ctx.options["tag_filter"])
    metrics, calls = get_lambda_metrics(target.account, target.region, [f.name for f in functions], start, end)
    read = Read(functions, metrics, {}, calls)
    candidates = log_scan_candidates(functions, metrics, policy)
    if candidates:
        try:
            read.timed_out = count_timeout_lines(target.account, target.region, candidates, start, end)
        except Exception as exc:  # no log access: the duration check still runs
            return Partial(read, [({"lambda-timeouts"}, f"logs: {error_summary(exc)}", "")])
    return read


def judge(target: AwsTarget, read: Read, policy: LambdaPolicy, ctx: RunContext) -> Judgement:
    return Judgement(
        findings=judge_functions(read.functions, read.metrics, read.timed_out, policy, target.scope),
        metrics=metric_rows(read.functions, read.metrics, target.scope, policy.window(ctx.now)[1]))


def notes(read: list[tuple[AwsTarget, Read]], policy: LambdaPolicy, ctx: RunContext) -> list[str]:
    start, end = policy.window(ctx.now)
    return [f"{sum(len(r.functions) for _, r in read)} functions in {len(read)} regions, window "
            f"{start:%H:%M}-{end:%H:%M} UTC, {sum(r.calls for _, r in read)} GetMetricData calls"]


CONTRACT = Job(name=JOB, policy=LambdaPolicy, service="lambda", collect=collect, judge=judge, notes=notes)


@job_flow(CONTRACT)
def lambda_health(
    policy: LambdaPolicy = LambdaPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    name_prefix: str = "",
    tag_filter: dict[str, str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Judge every function (matching `name_prefix` and `tag_filter`) over the policy's window.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now, options={"name_prefix": name_prefix, "tag_filter": tag_filter})
