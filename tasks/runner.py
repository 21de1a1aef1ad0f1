"""The one runner: what every job does, declared once.

A job is a `Job` declaration (policy model, per-target `collect`, pure per-target `judge`,
optional `act`); `run_job` executes it over any targets (each with a `scope`): the run's time,
one collect task per target with its errors captured as typed `Coverage`, judgement outside
that capture (a rule that raises fails the run), metrics, tell, then the one approval path
before anything changes. `run_aws` finds the AWS targets first: the credentials' own account
plus every `role_arns` account, every enabled region unless `regions` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from prefect_aws import AwsCredentials
from pydantic import BaseModel

from blocks.loading import load_block
from blocks.store import OpsStore, load_store
from rules.config import validate_aws_targets
from rules.findings import Coverage, Finding
from rules.pricing import BUNDLED, PriceTable
from tasks.approval import ApprovalExpired, Offer, ask_approval, cancelled, outcome_message
from tasks.aws.clients import (
    Account,
    deadline,
    enabled_regions,
    error_summary,
    shared_clients,
    stop_on_exit,
)
from tasks.aws.permissions import requires
from tasks.fan_out import fans_out, gather, is_part, save_part
from tasks.limits import aws_account_slot
from tasks.notify import on_flow_failure
from tasks.report import write_table
from tasks.tell import tell

# Bounded fan-out: 17 regions x N accounts must not open that many connections at once; across
# runs and workers, each account's global concurrency limit (tasks/limits.py) bounds it too.
MAX_CONCURRENT_TARGETS = 16
# The most one account x region may take before it is "not covered: no answer in N s".
TARGET_SECONDS = 60

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class AwsTarget:
    """One account x region: the unit a run reads, and the scope its findings belong to."""

    account: Account
    account_id: str
    region: str
    shared: Any = None  # what the job's `collect_account` read once for the whole account

    @property
    def scope(self) -> str:
        return f"{self.account_id}/{self.region}"


@dataclass
class Partial:
    """A collect result with parts that could not be read: (finding kinds, error, resource prefix)."""

    data: Any
    gaps: list[tuple[Sequence[str], str, str]] = field(default_factory=list)


@dataclass
class Judgement:
    """What a pure judge returns for one target."""

    findings: list[Finding] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    offers: list[Offer] = field(default_factory=list)  # changes a person may approve
    notes: list[str] = field(default_factory=list)
    details: list[Any] = field(default_factory=list)  # job-specific results its `after` hook uses

    def add(self, other: Judgement) -> None:
        self.findings += other.findings
        self.metrics += other.metrics
        self.offers += other.offers
        self.notes += other.notes
        self.details += other.details


@dataclass
class RunContext:
    """What a job's hooks may read besides their target: the run's time, store and options."""

    job: str
    now: datetime
    store: OpsStore
    apply: bool
    prices: PriceTable = field(default_factory=lambda: BUNDLED)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """How a job changes what it found: only approved offers reach `apply` (dry-run otherwise).

    `standing(offer, ctx)` says an offer is approved by a standing decision a person made
    once (a parking schedule approved earlier, an allow-listed user); `remember(offers, ctx)`
    records a new approval so the next runs need no click.
    """

    apply: Callable[[AwsTarget, list[Offer], RunContext], list[dict[str, Any]]]
    standing: Callable[[Offer, RunContext], bool] | None = None
    remember: Callable[[list[Offer], RunContext], None] | None = None


@dataclass(frozen=True)
class Job(Generic[P]):
    """A job declaration; the registry (`flows/registry.py`) lists them."""

    name: str
    policy: type[P]
    collect: Callable[[Any, P, RunContext], Any]  # one target (an `AwsTarget`, a warehouse...) -> data
    judge: Callable[[Any, Any, P, RunContext], Judgement]
    service: str = ""  # AWS jobs: regions are those where this service is offered
    act: Action | None = None
    prices: Callable[[list[AwsTarget], P, RunContext], tuple[PriceTable, list[str]]] | None = None
    after: Callable[[Judgement, P, RunContext], None] | None = None  # store what the next run recalls
    # Read once per account (S3 is global), before the regions; its failure hides `account_kinds`
    # (every kind when empty) in each of the account's regions.
    collect_account: Callable[[Account, P, RunContext], Any] | None = None
    account_kinds: frozenset[str] = frozenset()
    notes: Callable[[list[tuple[AwsTarget, Any]], P, RunContext], list[str]] | None = None


@dataclass
class RunResult:
    """What a run found, where it looked, and what it changed."""

    findings: list[Finding]
    offers: list[Offer]
    actions: list[dict[str, Any]]
    errors: dict[str, str]
    monthly_usd: float
    details: list[Any] = field(default_factory=list)  # job-specific: parking items, shrink plans


def job_flow(job: Job) -> Callable:
    """`@flow` for a job: its name, the failure alert and the bounded fan-out."""
    return flow(name=job.name, on_failure=[on_flow_failure],
                task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_TARGETS))


@task(name="resolve-account", cache_policy=NO_CACHE)
@requires("sts:GetCallerIdentity", "sts:AssumeRole", "ec2:DescribeRegions")
def resolve_account(account: Account, regions: list[str] | None, service: str) -> tuple[str, list[str]]:
    """The account id (assuming the role if any) and the regions to read in it.

    Building the session here, once, means the collect tasks that share this `Account` in
    threads never race to assume the role.
    """
    with deadline(TARGET_SECONDS, account.role_arn or "credentials' account"):
        return account.account_id, list(regions) if regions else enabled_regions(account, service)


# What finding the targets needs: part of every AWS job's least-privilege policy.
TARGETS = resolve_account.fn.aws_permissions


def aws_targets(creds: AwsCredentials, role_arns: list[str] | None, regions: list[str] | None,
                service: str, coverage: Coverage, own_account: bool = True) -> list[AwsTarget]:
    """The credentials' own account (unless `own_account` is False and roles are given) plus one
    per role; an account that cannot be entered is a gap."""
    own = [Account(creds)] if own_account or not role_arns else []
    accounts = [*own, *(Account(creds, arn) for arn in role_arns or [])]
    futures = [(a, resolve_account.submit(a, regions, service)) for a in accounts]
    by_account: dict[str, list[AwsTarget]] = {}
    for account, future in futures:
        try:
            account_id, account_regions = future.result()
        except Exception as exc:  # an expired role, no region, no answer: that account covers nothing
            coverage.fail(account.role_arn or "credentials' account", error_summary(exc))
            continue
        # A role listed for the credentials' own account is what the user chose for it: it wins.
        by_account[account_id] = [AwsTarget(account, account_id, region) for region in account_regions]
    return [t for targets in by_account.values() for t in targets]


@task(name="collect-account", cache_policy=NO_CACHE, task_run_name="collect-account-{account_id}")
def _collect_account(job: Job, account: Account, account_id: str, policy: BaseModel, ctx: RunContext) -> Any:
    with aws_account_slot(account_id), deadline(TARGET_SECONDS, account_id), shared_clients():
        return job.collect_account(account, policy, ctx)


def _read_accounts(job: Job, targets: list[AwsTarget], policy: BaseModel, ctx: RunContext,
                   coverage: Coverage) -> list[AwsTarget]:
    """`collect_account` once per account; its result rides along with each of the account's targets."""
    accounts = {t.account_id: t.account for t in targets}
    futures = {a: _collect_account.submit(job, acc, a, policy, ctx) for a, acc in accounts.items()}
    shared, kept = {}, []
    for account_id, future in futures.items():
        try:
            shared[account_id] = future.result()
        except Exception as exc:  # the account-wide part failed: hide its kinds in every region
            for t in targets:
                if t.account_id == account_id:
                    coverage.fail(t.scope, error_summary(exc), job.account_kinds)
    for t in targets:
        if t.account_id in shared:
            kept.append(AwsTarget(t.account, t.account_id, t.region, shared[t.account_id]))
        elif job.account_kinds:  # the regional part can still be read
            kept.append(t)
    return kept


def _slot(target: Any) -> AbstractContextManager:
    """An AWS target waits for a slot of its account's global limit; other targets need none here."""
    return aws_account_slot(target.account_id) if isinstance(target, AwsTarget) else nullcontext()


@task(name="collect", cache_policy=NO_CACHE, task_run_name="collect-{target.scope}")
def _collect(job: Job, target: AwsTarget, policy: BaseModel, ctx: RunContext) -> Any:
    with _slot(target), deadline(TARGET_SECONDS, target.scope), shared_clients():
        return job.collect(target, policy, ctx)


def _read_all(job: Job, targets: list[AwsTarget], policy: BaseModel, ctx: RunContext,
              coverage: Coverage) -> dict[str, tuple[AwsTarget, Any]]:
    """One collect task per target, all at once (bounded); errors become coverage gaps."""
    futures = [(t, _collect.submit(job, t, policy, ctx)) for t in targets]
    read: dict[str, tuple[AwsTarget, Any]] = {}
    for target, future in futures:
        try:
            data = future.result()
        except Exception as exc:  # one target failing must not sink the rest
            coverage.fail(target.scope, error_summary(exc))
            continue
        coverage.mark_read(target.scope)
        if isinstance(data, Partial):
            for kinds, error, prefix in data.gaps:
                coverage.fail(target.scope, error, kinds, prefix)
            data = data.data
        read[target.scope] = (target, data)
    return read


def _judge(job: Job, read: dict[str, tuple[AwsTarget, Any]], policy: BaseModel, ctx: RunContext) -> Judgement:
    """Pure judgement of every target, outside any error capture: a bug fails the run loudly."""
    total = Judgement()
    for target, data in read.values():
        part = job.judge(target, data, policy, ctx)
        # Findings belong to the target that was read: coverage decides their resolution by it.
        part.findings = [f if f.scope == target.scope else f.model_copy(update={"scope": target.scope})
                         for f in part.findings]
        total.add(part)
    return total


def run_aws(
    job: Job[P],
    policy: P | dict[str, Any],
    *,
    regions: list[str] | None,
    role_arns: list[str] | None,
    aws_credentials: AwsCredentials | str,
    store: OpsStore | str,
    apply: bool = False,
    now: datetime | None = None,
    options: dict[str, Any] | None = None,
) -> RunResult | State:
    """Run an AWS job: collect -> judge -> tell -> (apply: plan -> approval -> act -> tell)."""
    validate_aws_targets(regions, role_arns)
    ops_store = load_store(store)
    creds = load_block(AwsCredentials, aws_credentials, "aws_credentials")
    if fans_out(role_arns, apply):  # one child run per account on the pool's workers
        findings, coverage, notes = gather(ops_store, job.name, role_arns or [])
        return tell_gathered(job, policy, ops_store, now or datetime.now(timezone.utc), findings, coverage, notes)
    part = is_part()  # a child of a fanned-out sweep: its own account is read by a sibling
    with stop_on_exit():
        return run_job(job, policy, lambda coverage: aws_targets(
            creds, role_arns, regions, job.service, coverage, own_account=not part),
            store=ops_store, apply=apply and not part, now=now, options=options, part=part)


def tell_gathered(job: Job, policy: BaseModel | dict[str, Any], store: OpsStore, now: datetime,
                  findings: list[Finding], coverage: Coverage, notes: list[str]) -> RunResult:
    """The parent of a fanned-out sweep tells once what its children found."""
    policy = job.policy.model_validate(policy)
    tell(job.name, quote(findings), store, now, coverage, timedelta(hours=policy.repeat_interval_hours),
         notes=notes, policy=policy)
    return RunResult(findings, [], [], coverage.errors, round(sum(f.monthly_cost_usd or 0 for f in findings), 2))


def run_job(
    job: Job[P],
    policy: P | dict[str, Any],
    targets_of: Callable[[Coverage], Sequence[Any]],
    *,
    store: OpsStore,
    apply: bool = False,
    now: datetime | None = None,
    options: dict[str, Any] | None = None,
    part: bool = False,
) -> RunResult | State:
    """Run a job over the targets `targets_of` finds (a target it cannot reach is a coverage gap).
    `part`: one account of a fanned-out sweep: its findings go to the store for the parent to
    tell (tasks/fan_out.py)."""
    policy = job.policy.model_validate(policy)  # a mapping (a CLI, a test) gets the form's checks
    ctx = RunContext(job.name, now or datetime.now(timezone.utc), store, apply,
                     first_seen=store.first_seen(job.name), options=dict(options or {}))
    coverage = Coverage()
    targets = list(targets_of(coverage))
    notes: list[str] = []
    if job.prices and targets:
        ctx.prices, price_notes = job.prices(targets, policy, ctx)
        notes += price_notes
    if job.collect_account:
        targets = _read_accounts(job, targets, policy, ctx, coverage)
    read = _read_all(job, targets, policy, ctx, coverage)
    judged = _judge(job, read, policy, ctx)
    if job.notes:
        notes += job.notes(list(read.values()), policy, ctx)
    notes += judged.notes
    store.record_metrics(job.name, judged.metrics)
    if part:
        save_part(store, job.name, judged.findings, coverage, notes, ctx.now)
        return RunResult(judged.findings, [], [], coverage.errors,
                         round(sum(f.monthly_cost_usd or 0 for f in judged.findings), 2), judged.details)
    repeat = timedelta(hours=policy.repeat_interval_hours)
    # quote(): Prefect need not walk thousands of findings looking for futures.
    planned = [] if apply or not job.act else [
        f"would {o.action} {o.item_id} ({o.scope}): saves ${o.monthly_usd:,.2f}/mo"
        for o in judged.offers if o.eligible]  # an opted-out or cooling-down change is never offered
    tell(job.name, quote(judged.findings), store, ctx.now, coverage, repeat, notes=notes, planned=planned,
         policy=policy)
    actions: list[dict[str, Any]] = []
    if job.act and judged.offers:
        write_table(job.name, "plan", [o.row() for o in judged.offers],
                    f"{job.name}: {len(judged.offers)} proposed changes"
                    f"{'' if apply else ' (dry run: run with apply=True to act)'}")
    if job.act and judged.offers and apply:
        try:
            actions = _act(job, judged.offers, read, ctx, policy.approval_timeout_seconds)
        except ApprovalExpired as exc:
            return cancelled(str(exc))
        done = {a["resource"] for a in actions if a["outcome"] == "done"}
        if done:  # acted-on resources drop out: the digest announces them resolved
            left = [f for f in judged.findings if f.resource_id not in done]
            tell(job.name, quote(left), store, ctx.now, coverage, repeat, notes=notes)
    if job.after:
        job.after(judged, policy, ctx)
    return RunResult(judged.findings, judged.offers, actions, coverage.errors,
                     round(sum(f.monthly_cost_usd or 0 for f in judged.findings), 2), judged.details)


def _act(job: Job, offers: list[Offer], read: dict[str, tuple[AwsTarget, Any]], ctx: RunContext,
         timeout: int) -> list[dict[str, Any]]:
    """The one approval path, then one apply per target with approved offers."""
    action = job.act
    standing = [o for o in offers if o.eligible and action.standing and action.standing(o, ctx)]
    ask = [o for o in offers if o.eligible and o not in standing]
    approved = list(standing)
    if ask:
        chosen = ask_approval(job.name, ask, timeout)
        approved += chosen
        if chosen and action.remember:
            action.remember(chosen, ctx)
    by_target: dict[str, list[Offer]] = {}
    for offer in approved:
        by_target.setdefault(offer.scope, []).append(offer)
    rows: list[dict[str, Any]] = []
    for scope, chosen in by_target.items():
        target, _ = read[scope]
        with shared_clients():
            rows += action.apply(target, chosen, ctx)
    write_table(job.name, "actions", rows, f"{job.name}: {len(rows)} actions")
    outcome_message(job.name, rows)
    return rows
