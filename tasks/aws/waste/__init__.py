"""The waste-check catalogue and the engine that runs it for one account x region.

A check is one `Check(rule, lister, act, service)` line in `CHECKS`: `rule` is pure judgement
(`rules/waste.py`), `lister` reads the resources (its IAM actions declared with `@requires`),
`act` optionally changes one resource after approval. Listers run one after another inside the
runner's one collect task per target; a failing lister hides only its own check's findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.store import OpsStore
from rules.waste import (
    DYNAMODB_PROVISIONED,
    ECR_NO_LIFECYCLE,
    ECR_UNTAGGED,
    EXPIRING_RDS_RESERVATION,
    EXPIRING_REDSHIFT_RESERVATION,
    EXPIRING_SAVINGS_PLAN,
    IDLE_EMR,
    IDLE_NAT,
    IO1_VOLUME,
    KINESIS_IDLE_SHARDS,
    LOG_NO_RETENTION,
    LONG_STOPPED,
    NOTEBOOK_RUNNING,
    OLD_EBS_SNAPSHOT,
    OLD_RDS_SNAPSHOT,
    PREVIOUS_GENERATION,
    S3_MULTIPART,
    S3_NO_LIFECYCLE,
    S3_NONCURRENT,
    UNUSED_AMI,
    UNUSED_LB,
    UNUSED_SECRET,
    Resource,
    Rule,
    WastePolicy,
)
from tasks.approval import Offer
from tasks.aws.actions import Outcome
from tasks.aws.clients import Account, deadline, error_summary
from tasks.aws.permissions import requires
from tasks.aws.waste.analytics import list_emr_clusters, list_notebooks, list_streams, stop_notebook
from tasks.aws.waste.compute import (
    list_images,
    list_instance_types,
    list_provisioned_iops_volumes,
    list_rds_snapshots,
    list_stopped_instances,
    list_volume_snapshots,
)
from tasks.aws.waste.logs import list_log_groups, set_log_retention
from tasks.aws.waste.network import list_load_balancers, list_nat_gateways
from tasks.aws.waste.reservations import (
    SAVINGS_PLANS_REGION,
    list_reserved_db_instances,
    list_reserved_nodes,
    list_savings_plans,
)
from tasks.aws.waste.s3 import (
    add_abort_multipart_rule,
    add_noncurrent_expiration_rule,
    list_bucket_lifecycles,
    list_multipart_uploads,
    list_noncurrent_versions,
)
from tasks.aws.waste.scan import Listing, Scan
from tasks.aws.waste.services import (
    list_repositories,
    list_secrets,
    list_tables,
    switch_to_on_demand,
)
from tasks.runner import TARGET_SECONDS


class Check(NamedTuple):
    """One waste check. A tuple, so the IAM generator walks into its lister and action."""

    rule: Rule
    lister: Callable[[Scan], list[Resource] | Listing]
    act: Callable[[Account, str, Resource, WastePolicy], Outcome] | None = None
    service: str = "ec2"  # the boto3 service: regions that do not offer it have nothing to check
    account_wide: bool = False  # reads the account's bucket list (S3 is global)
    home_region: str | None = None  # an account-wide API: read, and reported, in this region only


CHECKS: tuple[Check, ...] = (
    Check(IDLE_NAT, list_nat_gateways),
    Check(UNUSED_LB, list_load_balancers, service="elbv2"),
    Check(LOG_NO_RETENTION, list_log_groups, set_log_retention, service="logs"),
    Check(S3_MULTIPART, list_multipart_uploads, add_abort_multipart_rule, service="s3", account_wide=True),
    Check(S3_NONCURRENT, list_noncurrent_versions, add_noncurrent_expiration_rule, service="s3", account_wide=True),
    Check(S3_NO_LIFECYCLE, list_bucket_lifecycles, service="s3", account_wide=True),
    Check(OLD_RDS_SNAPSHOT, list_rds_snapshots, service="rds"),
    Check(OLD_EBS_SNAPSHOT, list_volume_snapshots),
    Check(UNUSED_AMI, list_images),
    Check(LONG_STOPPED, list_stopped_instances),
    Check(PREVIOUS_GENERATION, list_instance_types),
    Check(IO1_VOLUME, list_provisioned_iops_volumes),
    Check(ECR_UNTAGGED, list_repositories, service="ecr"),
    Check(ECR_NO_LIFECYCLE, list_repositories, service="ecr"),
    Check(DYNAMODB_PROVISIONED, list_tables, switch_to_on_demand, service="dynamodb"),
    Check(UNUSED_SECRET, list_secrets, service="secretsmanager"),
    Check(IDLE_EMR, list_emr_clusters, service="emr"),
    Check(KINESIS_IDLE_SHARDS, list_streams, service="kinesis"),
    Check(NOTEBOOK_RUNNING, list_notebooks, stop_notebook, service="sagemaker"),
    Check(EXPIRING_REDSHIFT_RESERVATION, list_reserved_nodes, service="redshift"),
    Check(EXPIRING_RDS_RESERVATION, list_reserved_db_instances, service="rds"),
    Check(EXPIRING_SAVINGS_PLAN, list_savings_plans, service="savingsplans", home_region=SAVINGS_PLANS_REGION),
)
BY_KIND = {c.rule.kind: c for c in CHECKS}
# Findings the account-wide bucket listing decides: hidden everywhere when it fails.
ACCOUNT_KINDS = frozenset(c.rule.kind for c in CHECKS if c.account_wide)

Gap = tuple[Sequence[str], str, str]  # (finding kinds, error, resource prefix), as the runner takes them


@dataclass
class Read:
    """What one account x region held, per check kind, and what could not be read."""

    resources: dict[str, list[Resource]] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _offered(scan: Scan, service: str) -> bool:
    regions = scan.account.session.get_available_regions(service)
    return not regions or scan.region in regions


def scan_region(scan: Scan, open_kinds: Iterable[str] = ()) -> Read:
    """Run every check the policy enables; a lister's failure is a gap for its kind only.

    A check left out by `policy.checks` while it still has open findings here is a gap too:
    not looking proves nothing resolved.
    """
    read, open_kinds = Read(), set(open_kinds)
    for check in CHECKS:
        kind = check.rule.kind
        if not scan.policy.runs(kind):
            if kind in open_kinds:
                read.gaps.append(({kind}, f"{kind}: not run (left out of `policy.checks`)", ""))
            continue
        if not _offered(scan, check.service) or check.home_region not in (None, scan.region):
            read.resources[kind] = []
            continue
        if check.account_wide and scan.buckets is None:
            continue  # the account's bucket listing failed: the runner already hid these kinds
        try:
            # Each check gets the target's time budget: a slow endpoint costs its own check, not the rest.
            with deadline(TARGET_SECONDS, f"{scan.region} {kind}"):
                listing = scan.once(check.lister)
        except Exception as exc:  # AccessDenied, a service not enabled, no answer: this check only
            read.gaps.append(({kind}, f"{kind}: {error_summary(exc)}", ""))
            continue
        if isinstance(listing, Listing):
            read.gaps += [({kind}, f"{kind}: {error}", prefix) for error, prefix in listing.gaps]
            read.notes += listing.notes
            listing = listing.resources
        read.resources[kind] = listing
    return read


def offers_for(kind: str, findings: Iterable[Any], resources: Iterable[Resource], scope: str) -> list[Offer]:
    """An offer per finding of a check that can act; what a person approves is the resource id."""
    check = BY_KIND[kind]
    if check.act is None or check.rule.action is None:
        return []
    by_id = {r.id: r for r in resources}
    return [Offer(f.resource_id, scope, check.rule.action, f.monthly_cost_usd or 0.0, f.reason,
                  payload=(kind, by_id[f.resource_id])) for f in findings if f.kind == kind]


@task(name="apply-waste-actions", cache_policy=NO_CACHE)
@requires(write=True)  # each check's `act` declares what it calls
def apply_offers(account: Account, region: str, offers: Sequence[Offer], policy: WastePolicy, job: str,
                 store: OpsStore, now: datetime, flow_run_id: str | None = None) -> list[dict[str, Any]]:
    """Act on the approved offers of one account x region; one failure does not stop the rest."""
    rows = []
    for offer in offers:
        kind, resource = offer.payload
        try:
            outcome = BY_KIND[kind].act(account, region, resource, policy)
        except Exception as exc:  # recorded and reported; the other offers go on
            outcome = Outcome("failed", error_summary(exc))
        store.record_action(job, action=offer.action, resource_id=offer.item_id, scope=offer.scope,
                            dry_run=False, outcome=outcome.status, detail=outcome.detail,
                            flow_run_id=flow_run_id, now=now)
        rows.append({"resource": offer.item_id, "action": offer.action, "scope": offer.scope,
                     "outcome": outcome.status, "detail": outcome.detail,
                     "monthly_usd": round(offer.monthly_usd, 2)})
    return rows


__all__ = ["ACCOUNT_KINDS", "BY_KIND", "CHECKS", "Check", "Read", "Scan", "apply_offers", "offers_for",
           "scan_region"]
