"""compute-rightsizing: under-used EC2 instances (stop or one size down), RDS instances nobody
connects to, Redshift clusters with low CPU (pause/resume schedule or fewer nodes). Report only."""

from __future__ import annotations

from datetime import datetime, timedelta

from rules.compute_sizing import (
    ComputePolicy,
    judge_clusters,
    judge_databases,
    judge_instances,
    window,
)
from tasks.aws.compute import list_db_instances
from tasks.aws.ec2 import list_instances
from tasks.aws.utilization import list_redshift_clusters, utilization
from tasks.runner import AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "compute-rightsizing"


def collect(target: AwsTarget, policy: ComputePolicy, ctx: RunContext) -> tuple:
    account, region = target.account, target.region
    instances = list_instances(account, region)
    dbs = list_db_instances(account, region)
    clusters = list_redshift_clusters(account, region)
    start, end = window(ctx.now, policy.lookback_days)
    usage = utilization(account, region, instances, dbs, clusters, start, end,
                        end - timedelta(days=policy.db_idle_days))
    return instances, dbs, clusters, usage


def judge(target: AwsTarget, read: tuple, policy: ComputePolicy, ctx: RunContext) -> Judgement:
    instances, dbs, clusters, usage = read
    return Judgement(findings=[
        *judge_instances(instances, usage.instances, policy, ctx.prices),
        *judge_databases(dbs, usage.connections, policy, ctx.prices),
        *judge_clusters(clusters, usage.redshift_cpu, policy, ctx.prices),
    ], details=[usage.calls])


CONTRACT = Job(name=JOB, policy=ComputePolicy, service="ec2", collect=collect, judge=judge)


@job_flow(CONTRACT)
def compute_rightsizing(
    policy: ComputePolicy = ComputePolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: str = "aws",
    store: str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Find under-used EC2 instances, RDS instances and Redshift clusters, with the metric
    evidence and $/month of stopping, resizing or pausing them. Advice only: nothing is changed."""
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now)
