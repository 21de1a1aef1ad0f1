"""iac-drift: resources created outside IaC, managed ones gone or changed, and the managed share.

Per account, read once: every state (the configured `backends`, those found by key in the
account's buckets), parsed into the managed set and dropped; the resources of every
CloudFormation stack (which covers Serverless Framework services); the IAM roles. Per account
x region: the live resources of the compared kinds. Judged by `rules/iac_drift.py`. A state
that cannot be read is a finding naming the file; the others are still read, and while it
stays unreadable no resource of its account is called unmanaged (it may manage them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.findings import Finding
from rules.iac_drift import (
    DRIFT_KINDS,
    DRIFTED,
    MISSING,
    UNMANAGED,
    DriftPolicy,
    Live,
    ManagedIndex,
    coverage_rows,
    coverage_table,
    empty_backend_findings,
    judge_drift,
    unreadable_findings,
)
from rules.iac_state import StateBackend, StateError, parse_state
from tasks.aws.clients import Account, deadline, enabled_regions, error_summary
from tasks.aws.iac import (
    StateListing,
    bucket_regions,
    find_states,
    list_stacks,
    read_state,
    stack_resources,
)
from tasks.aws.inventory import list_roles, regional_inventory, with_role_tags
from tasks.report import write_table
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

JOB = "iac-drift"


class AccountState:
    """What one account's IaC manages, read once (a plain class: Prefect hands it on untouched)."""

    def __init__(self, account_id: str, regions: dict[str, str], listing: StateListing) -> None:
        self.account_id = account_id
        self.regions = regions  # bucket -> region
        self.listing = listing
        self.index = ManagedIndex()
        self.state_errors: dict[str, str] = {}  # s3://bucket/key -> why it could not be read
        self.stack_errors: dict[str, str] = {}  # region -> why its stacks could not be read
        self.stacks = 0
        self.state_bytes = 0
        self.roles: list[Live] | None = None
        self.roles_error = ""


def collect_managed(account: Account, policy: DriftPolicy, ctx: RunContext) -> AccountState:
    account_id = account.account_id
    regions = bucket_regions(account)
    backends: list[StateBackend] = ctx.options["backends"]
    shared = AccountState(account_id, regions, find_states(account, regions, backends, policy, owned_only=False))
    # A declared backend that cannot be listed is as unknown as an unreadable state; a bucket
    # discovery could not search is a note (discovery is best effort, within a budget anyway).
    declared = tuple(f"s3://{b.bucket}/" for b in backends)
    shared.state_errors.update({where: why for where, why in shared.listing.errors.items()
                                if where.startswith(declared)})
    # States can be large and many: their reading has its own bound, not one target's.
    with deadline(policy.state_read_seconds, f"{account_id} states"):
        for obj in shared.listing.states:
            try:
                raw = read_state(account, obj)
                shared.state_bytes += len(raw)
                parsed = parse_state(raw, obj)
                del raw  # the bytes hold secrets: gone as soon as the records are out
            except StateError as exc:
                shared.state_errors[obj.uri] = str(exc)
                continue
            except Exception as exc:  # AccessDenied (KMS too), NoSuchKey since listed: the others go on
                shared.state_errors[obj.uri] = error_summary(exc)
                continue
            for record in parsed.resources:
                shared.index.add(record)
        for region in ctx.options["regions"] or enabled_regions(account, "cloudformation"):
            try:
                stacks = list_stacks(account, region)
                records, errors = stack_resources(account, region, account_id, stacks)
            except Exception as exc:
                shared.stack_errors[region] = error_summary(exc)
                continue
            shared.stacks += len(stacks)
            for record in records:
                shared.index.add(record)
            if errors:
                shared.stack_errors[region] = "; ".join(f"stack {s}: {e}" for s, e in sorted(errors.items()))
        if "aws_iam_role" in policy.kinds:
            try:
                roles = list_roles(account)
                # Tags only where the opt-out tag could decide something: roles nothing manages.
                open_roles = [r for r in roles
                              if not r.excluded and not shared.index.manages(r.kind, account_id, "", r.native_id)]
                tagged = {r.native_id: r for r in with_role_tags(account, open_roles)}
                shared.roles = [tagged.get(r.native_id, r) for r in roles]
            except Exception as exc:
                shared.roles_error = error_summary(exc)
    return shared


class Read:
    def __init__(self, live: list[Live], listed: set[str], blocked: str, home: bool) -> None:
        self.live, self.listed, self.blocked, self.home = live, listed, blocked, home


def collect(target: AwsTarget, policy: DriftPolicy, ctx: RunContext) -> Read | Partial:
    shared: AccountState = target.shared
    home = target.region == ctx.options["home_region"]
    buckets = [b for b, r in shared.regions.items() if r == target.region]
    compared = {b for b in buckets if shared.index.manages("aws_s3_bucket", shared.account_id, target.region, b)}
    # Ten kinds, paged, in a large region take longer than one target's default bound: their own.
    with deadline(policy.region_read_seconds, target.scope):
        inventory = regional_inventory(target.account, target.region, shared.account_id, policy.kinds, buckets,
                                       compared)
    gaps: list[tuple[set[str], str, str]] = [(set(DRIFT_KINDS), f"{kind}: {error}", f"{kind}/")
                                             for kind, error in inventory.errors.items()]
    live, listed = inventory.live, inventory.listed
    if home and "aws_iam_role" in policy.kinds:
        if shared.roles is None:
            gaps.append((set(DRIFT_KINDS), f"aws_iam_role: {shared.roles_error}", "aws_iam_role/"))
        else:
            live, listed = live + shared.roles, listed | {"aws_iam_role"}
    blocked = ""
    if shared.state_errors:
        blocked = f"{len(shared.state_errors)} state(s) or backend(s) could not be read"
        gaps.append(({MISSING, DRIFTED}, f"{blocked}: their resources are unknown", ""))
    stack_trouble = shared.stack_errors.get(target.region) or (home and shared.stack_errors and "stacks of "
                                                                + ", ".join(sorted(shared.stack_errors)))
    if stack_trouble:
        blocked = "; ".join(filter(None, [blocked, f"CloudFormation: {stack_trouble}"]))
    if not shared.index.sources and not shared.listing.states and not shared.stacks and not blocked:
        blocked = "no state or stack found in this account: configure `backends`, or no IaC is in use here"
    if blocked:  # nothing is called unmanaged, and nothing unmanaged resolves, until it is known again
        gaps.append(({UNMANAGED}, blocked, ""))
    read = Read(live, listed, blocked, home)
    return Partial(read, gaps) if gaps else read


def judge(target: AwsTarget, read: Read, policy: DriftPolicy, ctx: RunContext) -> Judgement:
    shared: AccountState = target.shared
    findings, coverage = judge_drift(read.live, read.listed, shared.index, target.account_id, target.region,
                                     read.home, policy, ctx.prices, read.blocked)
    extra: list[Finding] = []
    if read.home:
        extra = unreadable_findings(shared.state_errors) + empty_backend_findings(shared.listing.empty)
    total, managed = sum(coverage.total.values()), sum(coverage.managed.values())
    notes = [f"{target.scope}: {managed} of {total} resources managed by IaC"
             + (f" ({managed / total:.0%})" if total else "")
             + (f"; unmanaged not judged: {read.blocked}" if read.blocked else "")]
    return Judgement(findings=findings + extra, notes=notes,
                     metrics=coverage_rows(coverage, target.scope, target.account_id, target.region, ctx.now))


def notes(read: list[tuple[AwsTarget, Any]], policy: DriftPolicy, ctx: RunContext) -> list[str]:
    accounts = {t.account_id: t.shared for t, _ in read if t.shared is not None}
    lines = []
    for account_id, s in sorted(accounts.items()):
        unread = sum(1 for o in s.listing.states if o.uri in s.state_errors)
        lines.append(f"{account_id}: {len(s.listing.states) - unread} of {len(s.listing.states)} states "
                     f"read ({s.state_bytes / 1024**2:.1f} MiB), {s.stacks} stacks, {s.index.records} managed "
                     f"records" + (f", {s.index.unplaced} without a known account/region (never called missing)"
                                   if s.index.unplaced else ""))
        declared = tuple(f"s3://{b.bucket}/" for b in ctx.options["backends"])
        for where, why in sorted(s.listing.errors.items()):
            if not where.startswith(declared):
                lines.append(f"{account_id}: {where} could not be searched for states ({why})")
        if s.listing.truncated or s.listing.unscanned:
            lines.append(f"{account_id}: the page budget ended the state search ({s.listing.unscanned} buckets not "
                         "searched): a state there would make its resources look unmanaged; declare `backends` "
                         "or raise `discovery_max_pages`")
    return lines


def after(judged: Judgement, policy: DriftPolicy, ctx: RunContext) -> None:
    rows = coverage_table(judged.metrics)
    write_table(JOB, "coverage", rows, f"{JOB}: managed share per account and kind ({len(rows)} rows)")


CONTRACT = Job(name=JOB, policy=DriftPolicy, service="ec2", collect=collect, judge=judge,
               collect_account=collect_managed, notes=notes, after=after)


@job_flow(CONTRACT)
def iac_drift(
    policy: DriftPolicy = DriftPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    backends: list[StateBackend] | None = None,
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> RunResult:
    """Compare what Terraform and Pulumi states and CloudFormation stacks manage with what each
    account holds.

    Args:
        backends: Terraform S3 backends (`bucket`, `key`, `workspace_key_prefix`) or folders of states (`bucket`, `prefix`), read by every account (a central state bucket must be readable by each role); states are also discovered by key unless `policy.discover_states` is off.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, now=now, options={"backends": list(backends or []), "regions": regions,
                                                  "home_region": regions[0] if regions else "us-east-1"})
