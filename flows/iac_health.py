"""iac-health: state backends, stale locks and CloudFormation stacks, with lock removal on approval.

Per account: the buckets and the states in them (the configured `backends`, plus discovery by
key within a page budget). Per account x region: the settings of the state buckets there, the
Terraform lock tables (digests and locks), S3 lock files and CloudFormation stacks. Judged by
`rules/iac_health.py`; a stale lock is removed only through the one approval path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect.runtime import flow_run as runtime_flow_run
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.iac_health import (
    EMPTY_BACKEND,
    LOCK_BYPASSED,
    LOCK_TABLE_MISSING,
    PUBLIC,
    REMOVE_LOCK,
    STACK_FAILED,
    STACK_STALE,
    STALE_LOCK,
    UNENCRYPTED,
    UNLOCKED,
    UNVERSIONED,
    VERSIONS_KEPT,
    BucketSettings,
    IacHealthPolicy,
    Lock,
    LockTable,
    Stack,
    judge_buckets,
    judge_empty_backends,
    judge_locking,
    judge_locks,
    judge_stacks,
    lock_offers,
)
from rules.iac_state import StateBackend, StateObject
from tasks.approval import Offer
from tasks.aws.clients import Account, error_summary
from tasks.aws.iac import (
    StateListing,
    account_public_access_block,
    bucket_regions,
    bucket_settings,
    find_states,
    list_stacks,
    lock_tables,
    read_lock_files,
    remove_locks,
    state_md5,
)
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

JOB = "iac-health"
BUCKET_KINDS = {UNVERSIONED, UNENCRYPTED, PUBLIC, VERSIONS_KEPT}
LOCK_KINDS = {UNLOCKED, LOCK_BYPASSED, LOCK_TABLE_MISSING, STALE_LOCK}
STACK_KINDS = {STACK_FAILED, STACK_STALE}


@dataclass
class Shared:
    """What one account holds, read once: its buckets' regions and the states in them."""

    regions: dict[str, str]
    listing: StateListing


@dataclass
class Read:
    states: list[StateObject]
    buckets: list[BucketSettings] = field(default_factory=list)
    tables: list[LockTable] = field(default_factory=list)
    lock_files: list[Lock] = field(default_factory=list)
    md5: dict[str, str] = field(default_factory=dict)
    stacks: list[Stack] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


def collect_states(account: Account, policy: IacHealthPolicy, ctx: RunContext) -> Shared:
    regions = bucket_regions(account)
    return Shared(regions, find_states(account, regions, ctx.options["backends"], policy, owned_only=True))


def collect(target: AwsTarget, policy: IacHealthPolicy, ctx: RunContext) -> Read | Partial:
    shared: Shared = target.shared
    backends: list[StateBackend] = ctx.options["backends"]
    here = [s for s in shared.listing.states if s.region == target.region]
    read = Read(here, empty=[b for b in shared.listing.empty
                             if shared.regions.get(b.removeprefix("s3://").split("/", 1)[0]) == target.region])
    gaps: list[tuple[set[str], str, str]] = [
        (BUCKET_KINDS | LOCK_KINDS | {EMPTY_BACKEND}, f"listing {where}: {error}", where)
        for where, error in shared.listing.errors.items()
        if shared.regions.get(where.removeprefix("s3://").split("/", 1)[0]) == target.region]
    try:
        account_block = account_public_access_block(target.account, target.account_id)
    except Exception as exc:  # without it a bucket's own block decides; say the account's was not read
        account_block, gaps = None, gaps + [({PUBLIC}, f"account public access block: {error_summary(exc)}", "")]
    for bucket in sorted({s.bucket for s in here}):
        try:
            read.buckets.append(bucket_settings(target.account, bucket, target.region, account_block,
                                                policy.version_scan_max_pages))
        except Exception as exc:
            gaps.append((BUCKET_KINDS, error_summary(exc), f"s3://{bucket}/"))
    named = {b.lock_table for b in backends if b.lock_table and shared.regions.get(b.bucket) == target.region}
    try:
        read.tables = lock_tables(target.account, target.region, named, policy.lock_table_hints, policy.opt_out_tag)
        digested = {path for t in read.tables for path in t.digests}
        for s in here:
            if s.kind == "terraform" and f"{s.bucket}/{s.key}" in digested:
                read.md5[s.uri] = state_md5(target.account, s)
        files = [f for f in shared.listing.lock_files if f.region == target.region]
        read.lock_files = read_lock_files(target.account, files, policy.opt_out_tag)
    except Exception as exc:  # the lock tables' findings stay as they were
        gaps.append((LOCK_KINDS, f"lock tables: {error_summary(exc)}", ""))
    try:
        read.stacks = list_stacks(target.account, target.region)
    except Exception as exc:
        gaps.append((STACK_KINDS, f"stacks: {error_summary(exc)}", ""))
    return Partial(read, gaps) if gaps else read


def judge(target: AwsTarget, read: Read, policy: IacHealthPolicy, ctx: RunContext) -> Judgement:
    backends = ctx.options["backends"]
    locks = [lock for t in read.tables for lock in t.locks] + read.lock_files
    stale = judge_locks(locks, policy, ctx.now)
    findings = [*judge_empty_backends(read.empty), *judge_buckets(read.buckets, read.states, ctx.prices),
                *judge_locking(read.states, backends, read.tables, read.md5), *stale,
                *judge_stacks(read.stacks, policy, ctx.now)]
    offers = [Offer(lock.resource_id, target.scope, REMOVE_LOCK, 0.0, finding.reason, eligible=not lock.opted_out,
                    payload=lock) for lock, finding in lock_offers(locks, stale)]
    return Judgement(findings=findings, offers=offers)


def act(target: AwsTarget, offers: list[Offer], ctx: RunContext) -> list[dict[str, Any]]:
    flow_run_id = str(runtime_flow_run.id) if runtime_flow_run.id else None
    return remove_locks(target.account, [o.payload for o in offers], target.scope, JOB, ctx.store,
                        ctx.options["opt_out_tag"], ctx.now, flow_run_id)


def notes(read: list[tuple[AwsTarget, Any]], policy: IacHealthPolicy, ctx: RunContext) -> list[str]:
    accounts = {t.account_id: t.shared for t, _ in read if t.shared is not None}
    states = sum(len(s.listing.states) for s in accounts.values())
    pages = sum(s.listing.pages for s in accounts.values())
    lines = [f"{states} states in {len(accounts)} accounts ({pages} pages of keys listed)"]
    for account_id, shared in sorted(accounts.items()):
        if shared.listing.truncated or shared.listing.unscanned:
            lines.append(f"{account_id}: the page budget ended the listing of "
                         f"{', '.join(shared.listing.truncated) or 'no bucket'}; {shared.listing.unscanned} buckets "
                         "not searched for states: raise `discovery_max_pages` or declare `backends`")
    owned = {b for s in accounts.values() for b in s.regions}
    for backend in ctx.options["backends"]:
        if backend.bucket not in owned:
            lines.append(f"{backend.label}: bucket not found in any account read (another account, or deleted)")
    return lines


CONTRACT = Job(name=JOB, policy=IacHealthPolicy, service="ec2", collect=collect, judge=judge,
               act=Action(apply=act), collect_account=collect_states, notes=notes)


@job_flow(CONTRACT)
def iac_health(
    policy: IacHealthPolicy = IacHealthPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    backends: list[StateBackend] | None = None,
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Check the state backends, locks and stacks; with `apply=True`, remove the stale locks a
    person approves (the run pauses and asks).

    Args:
        backends: Terraform S3 backends (`bucket`, `key`, `workspace_key_prefix`, `lock_table`, `use_lockfile`) or folders of states (`bucket`, `prefix`) in the account's own buckets; states are also discovered by key unless `policy.discover_states` is off.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now,
                   options={"backends": list(backends or []), "opt_out_tag": policy.opt_out_tag})
