"""compute-rightsizing: under-used EC2 instances (stop or one size down), RDS instances nobody
connects to, Redshift clusters with low CPU (pause/resume schedule or fewer nodes); serverless
first: EC2 instances busy a small share of the hours (Fargate) and RDS instances with idle or
spiky load (Aurora Serverless v2), reported only. Stopping the idle instances and databases needs
`apply=True` and a person's approval."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.compute_sizing import (
    ComputePolicy,
    advised,
    judge_aurora_serverless,
    judge_clusters,
    judge_databases,
    judge_instances,
    judge_serverless_instances,
    stops,
    window,
)
from tasks.approval import Offer
from tasks.aws.compute import list_db_instances, stop_resources
from tasks.aws.ec2 import describe_instance_types, list_instances
from tasks.aws.pricing import refreshed_prices
from tasks.aws.utilization import list_redshift_clusters, utilization
from tasks.runner import Action, AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "compute-rightsizing"


def collect(target: AwsTarget, policy: ComputePolicy, ctx: RunContext) -> tuple:
    account, region = target.account, target.region
    instances = list_instances(account, region)
    dbs = list_db_instances(account, region)
    clusters = list_redshift_clusters(account, region)
    start, end = window(ctx.now, policy.lookback_days)
    usage = utilization(account, region, instances, dbs, clusters, start, end,
                        end - timedelta(days=policy.db_idle_days))
    # vCPUs and memory of the instance types, and of the EC2 twins of the DB classes (db.m5.large: m5.large).
    types = {i.instance_type for i in instances if i.state == "running"}
    types |= {d.db_class.removeprefix("db.") for d in dbs if not d.cluster_id}
    sizes = describe_instance_types(account, region, sorted(types)) if types else {}
    return instances, dbs, clusters, usage, sizes


def judge(target: AwsTarget, read: tuple, policy: ComputePolicy, ctx: RunContext) -> Judgement:
    instances, dbs, clusters, usage, sizes = read
    findings = [
        *judge_instances(instances, usage.instances, policy, ctx.prices),
        *judge_databases(dbs, usage.connections, policy, ctx.prices),
        *judge_clusters(clusters, usage.redshift_cpu, policy, ctx.prices),
    ]
    findings += [
        *judge_serverless_instances(instances, usage.cpu_hourly, sizes, policy, ctx.prices, advised(findings)),
        *judge_aurora_serverless(dbs, usage.db_cpu_hourly, usage.db_connections_hourly, sizes, policy, ctx.prices,
                                 advised(findings)),
    ]
    offers = [Offer(s.resource_id, target.scope, f"stop-{s.service}", s.saving,
                    s.blocked or f"stop the {'instance' if s.service == 'ec2' else 'database'}",
                    eligible=not s.blocked, payload=s) for s in stops(findings, instances, dbs)]
    return Judgement(findings=findings, offers=offers, details=[usage.calls])


def stop_approved(target: AwsTarget, offers: list[Offer], ctx: RunContext) -> list[dict[str, Any]]:
    outcomes = stop_resources(target.account, target.region, [(o.payload.service, o.item_id) for o in offers],
                              ctx.store, JOB, ctx.now)
    return [{"action": o.action, "resource": o.item_id, "outcome": outcomes[o.item_id]} for o in offers]


CONTRACT = Job(name=JOB, policy=ComputePolicy, service="ec2", collect=collect, judge=judge,
               act=Action(apply=stop_approved), prices=refreshed_prices)


@job_flow(CONTRACT)
def compute_rightsizing(
    policy: ComputePolicy = ComputePolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Find under-used EC2 instances, RDS instances and Redshift clusters, with the metric
    evidence and $/month of stopping, resizing or pausing them, and the instances and databases
    that would cost less on Fargate or Aurora Serverless v2 (report only). With `apply=True`, the
    stops a person approves (the run pauses and asks; nothing is pre-selected) are made.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now)
