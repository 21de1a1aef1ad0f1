"""Flow `idle-resources`: every idle EIP, volume, snapshot and stale S3 prefix, what it costs,
and (with `apply=True`) a plan a person approves in the Prefect UI before anything changes.

Per account: the bucket list; per account x region: the EC2 inventory and the age of the
objects in that region's buckets. Judged by `rules/idle.py`; acted on through the one approval path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect.runtime import flow_run as runtime_flow_run
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.idle import (
    IDLE_EIP,
    ORPHANED_SNAPSHOT,
    STALE_OBJECTS,
    UNATTACHED_VOLUME,
    IdlePolicy,
    find_idle_addresses,
    find_orphaned_snapshots,
    find_stale_objects,
    find_unattached_volumes,
    plan_actions,
    s3_targets,
)
from tasks.approval import Offer
from tasks.aws.actions import apply_plan
from tasks.aws.clients import Account
from tasks.aws.ec2 import Ec2Inventory, ec2_inventory
from tasks.aws.pricing import refreshed_prices
from tasks.aws.s3 import list_buckets
from tasks.aws.s3_age import scan_object_age
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

JOB = "idle-resources"
# What a failed listing hides: without volumes (or AMIs) no snapshot can be called orphaned.
HIDDEN_BY = {"addresses": {IDLE_EIP}, "volumes": {UNATTACHED_VOLUME, ORPHANED_SNAPSHOT},
             "snapshots": {ORPHANED_SNAPSHOT}, "image-snapshots": {ORPHANED_SNAPSHOT}}


@dataclass
class Read:
    inventory: Ec2Inventory
    tallies: list
    notes: list[str]


def collect_buckets(account: Account, policy: IdlePolicy, ctx: RunContext) -> list:
    return list_buckets(account) if policy.s3_age_rules else []


def collect(target: AwsTarget, policy: IdlePolicy, ctx: RunContext) -> Read | Partial:
    inventory = ec2_inventory(target.account, target.region)
    gaps = [(HIDDEN_BY[kind], f"{kind}: {error}", "") for kind, error in inventory.errors.items()]
    s3, notes = s3_targets([b for b in target.shared or [] if b.region == target.region], policy)
    tallies: list = []
    if s3:
        tallies, bucket_errors = scan_object_age(target.account, s3, policy.s3_max_pages, ctx.now)
        gaps += [({STALE_OBJECTS}, error, f"{bucket}/") for bucket, error in bucket_errors.items()]
        if any(t.truncated for t in tallies):
            notes.append(f"{target.scope}: S3 scan stopped at the page budget ({policy.s3_max_pages} pages); "
                         "raise `s3_max_pages` or configure S3 Inventory for the rest")
    read = Read(inventory, tallies, notes)
    return Partial(read, gaps) if gaps else read


def judge(target: AwsTarget, read: Read, policy: IdlePolicy, ctx: RunContext) -> Judgement:
    got, scope, prices, seen, now = read.inventory, target.scope, ctx.prices, ctx.first_seen, ctx.now
    findings = []
    if got.addresses is not None:
        findings += find_idle_addresses(got.addresses, scope, policy, prices, seen, now)
    if got.volumes is not None:
        findings += find_unattached_volumes(got.volumes, scope, policy, prices, seen, now)
    if None not in (got.snapshots, got.volumes, got.image_snapshots):
        volume_ids = {v.volume_id for v in got.volumes}
        findings += find_orphaned_snapshots(got.snapshots, volume_ids, got.image_snapshots, scope, policy,
                                            prices, seen, now)
    findings += find_stale_objects(read.tallies, target.account_id, prices, seen, now)
    offers = [Offer(p.item_id, scope, p.action, p.monthly_cost_usd, p.detail, p.eligible, payload=p)
              for p in plan_actions(findings, policy, now)]
    return Judgement(findings=findings, offers=offers, notes=read.notes)


def act(target: AwsTarget, offers: list[Offer], ctx: RunContext) -> list[dict[str, Any]]:
    flow_run_id = str(runtime_flow_run.id) if runtime_flow_run.id else None
    return apply_plan(target.account, target.region, [o.payload for o in offers], JOB, ctx.store,
                      ctx.options["opt_out_tag"], ctx.now, flow_run_id)


CONTRACT = Job(name=JOB, policy=IdlePolicy, service="ec2", collect=collect, judge=judge, act=Action(apply=act),
          prices=refreshed_prices, collect_account=collect_buckets, account_kinds=frozenset({STALE_OBJECTS}))


@job_flow(CONTRACT)
def idle_resources(
    policy: IdlePolicy = IdlePolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Sweep idle resources; with `apply=True`, act on what a person approves.

    Args:
        policy: Thresholds, S3 age rules, opt-out tag, grace period and approval timeout.
        regions: Regions to sweep; unset means every region enabled for each account.
        role_arns: Roles to assume, one per account, besides the credentials' own account.
        aws_credentials: Name of the prefect-aws `AwsCredentials` block.
        store: Name of the `OpsStore` block.
        apply: Publish a plan, pause for approval, then act on the approved items only.
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now, options={"opt_out_tag": policy.opt_out_tag})
