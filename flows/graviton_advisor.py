"""graviton-advisor: x86 EC2, RDS, ElastiCache and Lambda -> Graviton, with $/month and a note."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import load_store
from rules.graviton import (
    GravitonPolicy,
    cache_candidates,
    ec2_candidates,
    graviton_type,
    lambda_candidates,
    rds_candidates,
)
from rules.pricing import BUNDLED
from tasks.aws.clients import Account, error_summary
from tasks.aws.compute import (
    lambda_gb_seconds,
    list_cache_clusters,
    list_db_instances,
    list_functions,
    orderable_db_classes,
)
from tasks.aws.ec2 import describe_instance_types, list_instances
from tasks.notify import on_flow_failure
from tasks.tell import tell

JOB = "graviton-advisor"


@flow(name=JOB, on_failure=[on_flow_failure])
def graviton_advisor(
    policy: GravitonPolicy = GravitonPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] = ["us-east-1"],  # noqa: B006 - Prefect parameters are copied per run
    aws_credentials: str = "aws",
    store: str = "ops-store",
    now: datetime | None = None,
) -> list:
    """Report what moving to Graviton would save. Advice only: nothing is changed."""
    ops_store = load_store(store)
    account = Account(load_block(AwsCredentials, aws_credentials, "aws_credentials"))
    now = now or datetime.now(timezone.utc)

    findings, errors = [], {}
    for region in regions:
        try:
            instances = list_instances(account, region)
            types = {i.instance_type for i in instances}
            type_info = describe_instance_types(
                account, region, sorted(types | {t for t in map(graviton_type, types) if t}))
            dbs = [d for d in list_db_instances(account, region) if graviton_type(d.db_class)]
            orderable = orderable_db_classes(
                account, region, [(d.engine, d.engine_version, graviton_type(d.db_class)) for d in dbs])
            functions = [f for f in list_functions(account, region) if f.architecture == "x86_64"]
            usage = lambda_gb_seconds(account, region, functions, now - timedelta(days=policy.lookback_days), now)
            findings += ec2_candidates(instances, type_info, BUNDLED, policy)
            findings += rds_candidates(dbs, orderable, BUNDLED, policy)
            findings += cache_candidates(list_cache_clusters(account, region), BUNDLED, policy)
            findings += lambda_candidates(functions, usage, BUNDLED, policy)
        except Exception as exc:  # one region failing does not sink the others
            errors[region] = error_summary(exc)
    tell(JOB, findings, ops_store, now, repeat_interval=timedelta(days=7), errors=errors)
    return findings
