"""graviton-advisor: x86 EC2, RDS, ElastiCache and Lambda -> Graviton, with $/month. Advice only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.graviton import (
    GravitonPolicy,
    cache_candidates,
    ec2_candidates,
    graviton_type,
    lambda_candidates,
    rds_candidates,
)
from tasks.aws.compute import (
    lambda_gb_seconds,
    list_cache_clusters,
    list_db_instances,
    list_functions,
    orderable_db_classes,
)
from tasks.aws.ec2 import describe_instance_types, list_instances
from tasks.aws.pricing import refreshed_prices
from tasks.runner import AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "graviton-advisor"


@dataclass
class Read:
    instances: list
    type_info: dict
    dbs: list
    orderable: dict
    caches: list
    functions: list
    usage: dict


def collect(target: AwsTarget, policy: GravitonPolicy, ctx: RunContext) -> Read:
    account, region = target.account, target.region
    instances = list_instances(account, region)
    types = {i.instance_type for i in instances}
    type_info = describe_instance_types(account, region, sorted(types | {t for t in map(graviton_type, types) if t}))
    dbs = [d for d in list_db_instances(account, region) if graviton_type(d.db_class)]
    orderable = orderable_db_classes(account, region,
                                     [(d.engine, d.engine_version, graviton_type(d.db_class)) for d in dbs])
    functions = [f for f in list_functions(account, region) if f.architecture == "x86_64"]
    usage = lambda_gb_seconds(account, region, functions, ctx.now - timedelta(days=policy.lookback_days), ctx.now)
    return Read(instances, type_info, dbs, orderable, list_cache_clusters(account, region), functions, usage)


def judge(target: AwsTarget, read: Read, policy: GravitonPolicy, ctx: RunContext) -> Judgement:
    return Judgement(findings=[
        *ec2_candidates(read.instances, read.type_info, ctx.prices, policy),
        *rds_candidates(read.dbs, read.orderable, ctx.prices, policy),
        *cache_candidates(read.caches, ctx.prices, policy),
        *lambda_candidates(read.functions, read.usage, ctx.prices, policy),
    ])


CONTRACT = Job(name=JOB, policy=GravitonPolicy, service="ec2", collect=collect, judge=judge,
               prices=refreshed_prices)


@job_flow(CONTRACT)
def graviton_advisor(
    policy: GravitonPolicy = GravitonPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Report what moving to Graviton would save. Advice only: nothing is changed.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now)
