"""Flow `idle-resources`: every idle EIP, volume, snapshot and stale S3 prefix, what it costs,
and (with `apply=True`) a plan a person approves in the Prefect UI before anything changes.

collect (one task run per account x region, one per account for S3) -> judge (`rules/idle.py`)
-> tell -> [apply: plan artifact -> pause for approval -> act on the approved items -> tell].
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from prefect import flow
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled, Cancelling, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from prefect_aws import AwsCredentials
from pydantic import Field, create_model

from blocks.loading import load_block
from blocks.store import OpsStore, load_store
from rules.findings import Finding
from rules.idle import (
    IdlePolicy,
    PlanItem,
    account_id_of,
    find_idle_addresses,
    find_orphaned_snapshots,
    find_stale_objects,
    find_unattached_volumes,
    plan_actions,
    plan_rows,
    s3_targets,
    validate_targets,
)
from rules.messages import money
from rules.pricing import BUNDLED, PriceTable
from tasks.aws.accounts import resolve_account
from tasks.aws.actions import apply_plan
from tasks.aws.clients import Account, error_summary
from tasks.aws.ec2 import ec2_inventory
from tasks.aws.pricing import refresh_price_table
from tasks.aws.s3 import list_buckets
from tasks.aws.s3_age import scan_object_age
from tasks.notify import on_flow_failure
from tasks.report import write_table
from tasks.tell import tell

JOB = "idle-resources"
PRICE_CACHE_DAYS = 7
APPROVAL_POLL_SECONDS = 2
DEFAULT_POLICY = IdlePolicy()
MAX_CONCURRENT_CALLS = 16

# A sweep must see the account as it is now: collect results never come from a cache.
_EC2_INVENTORY = ec2_inventory.with_options(cache_policy=NO_CACHE)
_LIST_BUCKETS = list_buckets.with_options(cache_policy=NO_CACHE)


def _result(future: PrefectFuture, where: str, errors: dict[str, str]) -> Any:
    """A collect task's result, or None with the failure recorded for the report."""
    try:
        return future.result()
    except Exception as exc:  # AccessDenied, endpoint errors: reported, the others go on
        errors[where] = error_summary(exc)
        return None


def _resolve_accounts(creds: AwsCredentials, role_arns: list[str] | None, regions: list[str] | None,
                      errors: dict[str, str]) -> dict[str, tuple[Account, list[str]]]:
    """account id -> (account, regions to sweep); an account that cannot be entered is reported."""
    accounts = [Account(creds, arn) for arn in role_arns] if role_arns else [Account(creds)]
    futures = [(a, resolve_account.submit(a, regions)) for a in accounts]
    resolved = {}
    for account, future in futures:
        label = account_id_of(account.role_arn) if account.role_arn else "current account"
        found = _result(future, label, errors)
        if found:
            account_id, account_regions = found
            resolved[account_id] = (account, account_regions)
    return resolved


def _prices(accounts: dict[str, tuple[Account, list[str]]], policy: IdlePolicy, store: OpsStore,
            now: datetime, notes: list[str]) -> PriceTable:
    """Pricing API prices (cached in the store for a week), else the bundled table."""
    if not policy.refresh_prices or not accounts:
        return BUNDLED
    cached = store.get_watermark(JOB, "price-table")
    if cached:
        entry = json.loads(cached)
        if now - datetime.fromisoformat(entry["fetched_at"]) < timedelta(days=PRICE_CACHE_DAYS):
            return PriceTable.model_validate(entry["table"])
    account, _ = next(iter(accounts.values()))
    regions = sorted({r for _, rs in accounts.values() for r in rs})
    try:
        table = refresh_price_table(account, regions)
    except Exception as exc:  # no Pricing API access: the bundled list prices still hold
        notes.append(f"Bundled list prices used: Pricing API unavailable ({error_summary(exc)})")
        return BUNDLED
    store.set_watermark(JOB, "price-table", json.dumps(
        {"fetched_at": now.isoformat(), "table": table.model_dump()}), now)
    return table


def _sweep(accounts: dict[str, tuple[Account, list[str]]], policy: IdlePolicy, prices: PriceTable,
           first_seen: dict[str, datetime], now: datetime, errors: dict[str, str],
           notes: list[str]) -> list[Finding]:
    """Collect everything concurrently, then judge each account x region."""
    futures = {
        (account_id, region): _EC2_INVENTORY.submit(account, region)
        for account_id, (account, regions) in accounts.items()
        for region in regions
    }
    buckets = {account_id: _LIST_BUCKETS.submit(account)
               for account_id, (account, _) in accounts.items() if policy.s3_age_rules}
    findings: list[Finding] = []
    for account_id, (account, regions) in accounts.items():
        for region in regions:
            scope = f"{account_id}/{region}"
            got = _result(futures[(account_id, region)], scope, errors)
            if got is None:
                continue
            if got.errors:  # keyed by scope, so `tell` keeps that scope's open findings open
                errors[scope] = "; ".join(f"{kind}: {msg}" for kind, msg in got.errors.items())
            if got.addresses is not None:
                findings += find_idle_addresses(got.addresses, scope, policy, prices, first_seen, now)
            if got.volumes is not None:
                findings += find_unattached_volumes(got.volumes, scope, policy, prices, first_seen, now)
            # Without the volume and AMI lists no snapshot can be called orphaned.
            if None not in (got.snapshots, got.volumes, got.image_snapshots):
                volume_ids = {v.volume_id for v in got.volumes}
                findings += find_orphaned_snapshots(got.snapshots, volume_ids, got.image_snapshots,
                                                    scope, policy, prices, first_seen, now)
        if account_id in buckets:
            findings += _stale_objects(account_id, account, regions, buckets[account_id], policy,
                                       prices, first_seen, now, errors, notes)
    return findings


def _stale_objects(account_id: str, account: Account, regions: list[str], buckets_future: PrefectFuture,
                   policy: IdlePolicy, prices: PriceTable, first_seen: dict[str, datetime],
                   now: datetime, errors: dict[str, str], notes: list[str]) -> list[Finding]:
    # Failures are keyed "<account> <resource prefix>" so `tell` keeps just those findings open.
    buckets = _result(buckets_future, f"{account_id} s3://", errors)
    if buckets is None:
        return []
    targets, skipped = s3_targets([b for b in buckets if b.region in regions], policy)
    notes += skipped
    if not targets:
        return []
    tallies, bucket_errors = scan_object_age(account, targets, policy.s3_max_pages, now)
    errors.update({f"{account_id} {k}/": v for k, v in bucket_errors.items()})
    if any(t.truncated for t in tallies):
        notes.append(f"{account_id}: S3 scan stopped at the page budget ({policy.s3_max_pages} pages); "
                     "raise `s3_max_pages` or configure S3 Inventory for the rest")
    return find_stale_objects(tallies, account_id, prices, first_seen, now)


def approval_form(offered: Sequence[PlanItem]) -> type[RunInput]:
    """The run input a person fills in to resume: which of the offered items to act on."""
    choices = Literal[tuple(p.item_id for p in offered)]  # type: ignore[valid-type]
    form = create_model(
        "IdleApproval",
        __base__=RunInput,
        approved=(list[choices], Field(default_factory=list,
                                       description="Resource ids to act on (see the plan artifact).")),
        approve_all=(bool, Field(default=False, description="Act on every offered item.")),
    )
    total = sum(p.monthly_cost_usd for p in offered)
    return form.with_initial_data(description=(
        f"**{len(offered)} idle resources, {money(total)}** can be removed. Pick the ones to act "
        f"on; see the `{JOB}-plan` artifact for every resource and its cost."))


def _act(accounts: dict[str, tuple[Account, list[str]]], chosen: Sequence[PlanItem], store: OpsStore,
         policy: IdlePolicy, now: datetime, errors: dict[str, str]) -> list[dict[str, Any]]:
    """One apply task per (account, region) with approved items."""
    groups: dict[tuple[str, str], list[PlanItem]] = defaultdict(list)
    for item in chosen:
        groups[(item.account, item.region)].append(item)
    flow_run_id = str(runtime_flow_run.id) if runtime_flow_run.id else None
    futures = {
        key: apply_plan.submit(accounts[key[0]][0], key[1], items, JOB, store, policy.opt_out_tag,
                               now, flow_run_id)
        for key, items in groups.items()
    }
    rows: list[dict[str, Any]] = []
    for (account_id, region), future in futures.items():
        rows += _result(future, f"{account_id}/{region} apply", errors) or []
    return rows


def _cancel(message: str) -> State:
    """End the run Cancelled. The server turns an expired pause into Failed unless the run goes
    through Cancelling first, which is what a person cancelling it in the UI would do."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime_flow_run.id, Cancelling(message=message), force=True)
    return Cancelled(message=message)


# Bounded fan-out: 17 regions x N accounts must not open that many connections at once.
@flow(name=JOB, on_failure=[on_flow_failure], task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_CALLS))
def idle_resources(
    policy: IdlePolicy = DEFAULT_POLICY,
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: str = "aws",
    store: str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Sweep idle resources; with `apply=True`, act on what a person approves.

    Args:
        policy: Thresholds, S3 age rules, opt-out tag, grace period and approval timeout.
        regions: Regions to sweep; unset means every region enabled for each account.
        role_arns: Roles to assume, one per account; unset means the credentials' own account.
        aws_credentials: Name of the prefect-aws `AwsCredentials` block.
        store: Name of the `OpsStore` block.
        apply: Publish a plan, pause for approval, then act on the approved items only.
        now: The time of the run (tests); defaults to the current time.
    """
    validate_targets(regions, role_arns)
    ops_store = load_store(store)
    creds = load_block(AwsCredentials, aws_credentials, "aws_credentials")
    now = now or datetime.now(timezone.utc)
    repeat = timedelta(hours=policy.repeat_interval_hours)
    errors: dict[str, str] = {}
    notes: list[str] = []

    accounts = _resolve_accounts(creds, role_arns, regions, errors)
    prices = _prices(accounts, policy, ops_store, now, notes)
    findings = _sweep(accounts, policy, prices, ops_store.first_seen(JOB), now, errors, notes)
    # quote(): Prefect need not walk thousands of findings looking for futures.
    tell(JOB, quote(findings), ops_store, now, repeat, errors=errors, notes=notes)
    summary: dict[str, Any] = {
        "findings": len(findings), "monthly_usd": round(sum(f.monthly_cost_usd or 0 for f in findings), 2),
        "errors": errors, "actions": [],
    }
    if not apply:
        return summary

    plan = plan_actions(findings, policy, now)
    write_table(JOB, "plan", plan_rows(plan), f"{JOB}: plan of {len(plan)} actions, "
                f"{money(sum(p.monthly_cost_usd for p in plan))}")
    offered = [p for p in plan if p.eligible]
    if not offered:
        return summary
    try:
        approval = pause_flow_run(wait_for_input=approval_form(offered),
                                  timeout=policy.approval_timeout_seconds,
                                  poll_interval=APPROVAL_POLL_SECONDS)
    except FlowPauseTimeout:
        return _cancel(f"Nobody approved the plan within {policy.approval_timeout_seconds} s: "
                       "nothing was changed.")
    chosen = offered if approval.approve_all else [p for p in offered if p.item_id in set(approval.approved)]
    rows = _act(accounts, chosen, ops_store, policy, now, errors)
    write_table(JOB, "actions", rows, f"{JOB}: {len(rows)} actions")
    done = {r["resource"] for r in rows if r["outcome"] == "done"}
    outcomes = defaultdict(int)
    for r in rows:
        outcomes[r["outcome"]] += 1
    notes.append("Approved actions: " + (", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "none"))
    # Resources acted on drop out of the findings: the digest announces them as resolved.
    tell(JOB, quote([f for f in findings if f.resource_id not in done]), ops_store, now, repeat,
         errors=errors, notes=notes)
    return {**summary, "actions": rows}
