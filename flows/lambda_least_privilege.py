"""lambda-least-privilege: functions whose execution role grants too much, named by statement.

Per account x region: the functions and their roles, then each distinct role's policies
(managed ones read once). Judged by `rules/lambda_privilege.py`. Report only.
"""

from __future__ import annotations

from datetime import datetime

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.lambda_privilege import Function, PrivilegePolicy, RolePolicy, judge_functions
from tasks.aws.iam import function_roles, role_policies
from tasks.runner import AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "lambda-least-privilege"


def collect(target: AwsTarget, policy: PrivilegePolicy, ctx: RunContext) -> tuple[list[Function], dict[str, list[RolePolicy]]]:
    functions = function_roles(target.account, target.region)
    return functions, role_policies(target.account, {f.role_name for f in functions if f.role_arn})


def judge(target: AwsTarget, read: tuple[list[Function], dict[str, list[RolePolicy]]], policy: PrivilegePolicy,
          ctx: RunContext) -> Judgement:
    functions, policies = read
    return Judgement(findings=judge_functions(functions, policies, policy))


CONTRACT = Job(name=JOB, policy=PrivilegePolicy, service="lambda", collect=collect, judge=judge)


@job_flow(CONTRACT)
def lambda_least_privilege(
    policy: PrivilegePolicy = PrivilegePolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Name the functions whose execution role allows more than least privilege.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now)
