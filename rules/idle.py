"""Idle resources: what is paid for and used by nothing, what it costs, and what to do about it.

Pure judgement over the collectors' records (`tasks/aws/ec2.py`, `tasks/aws/s3.py`): unattached
Elastic IPs, `available` volumes, orphaned snapshots, and S3 objects older than an age policy
that no lifecycle rule handles. "Idle since" is the first time the store saw the finding (AWS
keeps no detach time); the plan offers only findings idle for at least the grace period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rules.config import OPT_OUT_TAG, ActingPolicy, PricedPolicy, opted_out
from rules.findings import Finding, Severity
from rules.pricing import (
    PriceTable,
    ebs_volume_monthly,
    public_ipv4_monthly,
    s3_monthly,
    snapshot_monthly,
)

IDLE_EIP = "idle-elastic-ip"
UNATTACHED_VOLUME = "unattached-volume"
ORPHANED_SNAPSHOT = "orphaned-snapshot"
STALE_OBJECTS = "stale-s3-objects"

# What the act step does for each kind (names of the functions in tasks/aws/actions.py).
ACTION_OF = {
    IDLE_EIP: "release-address",
    UNATTACHED_VOLUME: "snapshot-then-delete-volume",
    ORPHANED_SNAPSHOT: "delete-snapshot",
    STALE_OBJECTS: "put-lifecycle-expiration",
}

# Tag put on the snapshot taken before a volume is deleted: where it came from.
ORIGIN_VOLUME_TAG = "dataplatform-ops:origin-volume"



class S3AgeRule(BaseModel):
    """Objects under `prefix` of `bucket` older than `max_age_days` are stale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(description="Bucket name, or `*` for every bucket.")
    prefix: str = Field(default="", description="Key prefix the rule covers (empty: the whole bucket).")
    max_age_days: int = Field(ge=1, description="Objects older than this many days are stale.")


class IdlePolicy(ActingPolicy, PricedPolicy):
    """Thresholds of the idle-resource sweep (rendered as a form in the Prefect UI)."""

    volume_min_age_days: int = Field(
        default=7, ge=0, description="Ignore `available` volumes created less than this many days ago."
    )
    snapshot_min_age_days: int = Field(
        default=30, ge=1, description="Orphaned snapshots younger than this many days are left alone."
    )
    backup_retention_days: int = Field(
        default=90, ge=1,
        description="Snapshots this sweep took before deleting a volume are kept this many days.",
    )
    s3_age_rules: list[S3AgeRule] = Field(
        default_factory=list, description="Per-bucket/prefix age policy for S3 objects."
    )
    s3_max_pages: int = Field(
        default=200, ge=1, description="ListObjectsV2 pages (1,000 keys each) read per run in total."
    )
    opt_out_tag: str = Field(
        default=OPT_OUT_TAG, min_length=1,
        description="Resources (or buckets) carrying this tag key are never reported or touched.",
    )
    grace_days: int = Field(
        default=0, ge=0,
        description="Offer a resource for action only after it was seen idle this many days.",
    )


# --- the records the rules read (duck-typed: tasks/aws/ec2.py and s3.py satisfy them) -------


class _Tagged(Protocol):
    tags: dict[str, str]


@dataclass
class ObjectTally:
    """Stale objects of one (bucket, prefix) rule, aggregated while paging (memory stays flat)."""

    bucket: str
    region: str
    prefix: str
    max_age_days: int
    objects: int = 0
    bytes_by_class: dict[str, int] = field(default_factory=dict)
    oldest: datetime | None = None
    pages: int = 0
    truncated: bool = False
    source: str = "list"  # "list" (ListObjectsV2) or "inventory" (an S3 Inventory report)

    def add(self, size: int, last_modified: datetime, storage_class: str, now: datetime) -> None:
        if now - last_modified <= timedelta(days=self.max_age_days):
            return
        self.objects += 1
        key = storage_class or "STANDARD"
        self.bytes_by_class[key] = self.bytes_by_class.get(key, 0) + size
        if self.oldest is None or last_modified < self.oldest:
            self.oldest = last_modified


def _idle_numbers(key: str, first_seen: Mapping[str, datetime], now: datetime) -> dict[str, Any]:
    since = first_seen.get(key, now)
    return {"idle_since": since.isoformat(), "idle_days": (now - since).days}


def _finding(kind: str, resource_id: str, scope: str, reason: str, cost: float, estimated: bool,
             numbers: dict[str, Any], first_seen: Mapping[str, datetime], now: datetime) -> Finding:
    key = f"{kind}|{scope}|{resource_id}"
    numbers = {**numbers, **_idle_numbers(key, first_seen, now), "price_estimated": estimated}
    if numbers["idle_days"]:
        reason += f"; idle for {numbers['idle_days']} days"
    return Finding(kind=kind, resource_id=resource_id, scope=scope, severity=Severity.WARNING,
                   reason=reason, numbers=numbers, monthly_cost_usd=cost)


def _kept(resource: _Tagged, policy: IdlePolicy) -> bool:
    return opted_out(resource.tags, policy.opt_out_tag)


def find_idle_addresses(addresses: Iterable[Any], scope: str, policy: IdlePolicy, prices: PriceTable,
                        first_seen: Mapping[str, datetime], now: datetime) -> list[Finding]:
    """Elastic IPs associated with nothing, at the public IPv4 price (billed attached or not)."""
    found = []
    for a in addresses:
        if a.association_id or a.instance_id or a.network_interface_id or _kept(a, policy):
            continue
        price = public_ipv4_monthly(prices, a.region)
        found.append(_finding(
            IDLE_EIP, a.allocation_id, scope, f"Elastic IP {a.public_ip} is associated with nothing",
            price.usd, price.estimated, {"public_ip": a.public_ip, "region": a.region}, first_seen, now,
        ))
    return found


def find_unattached_volumes(volumes: Iterable[Any], scope: str, policy: IdlePolicy,
                            prices: PriceTable, first_seen: Mapping[str, datetime],
                            now: datetime) -> list[Finding]:
    """EBS volumes in state `available`, older than `volume_min_age_days`."""
    found = []
    for v in volumes:
        age = now - v.create_time
        if v.state != "available" or _kept(v, policy) or age < timedelta(days=policy.volume_min_age_days):
            continue
        price = ebs_volume_monthly(prices, v.region, v.volume_type, v.size_gb, v.iops, v.throughput)
        found.append(_finding(
            UNATTACHED_VOLUME, v.volume_id, scope,
            f"{v.size_gb} GiB {v.volume_type} volume attached to nothing (created {age.days} days ago)",
            price.usd, price.estimated,
            {"region": v.region, "size_gb": v.size_gb, "volume_type": v.volume_type,
             "iops": v.iops, "throughput": v.throughput, "age_days": age.days},
            first_seen, now,
        ))
    return found


def find_orphaned_snapshots(snapshots: Iterable[Any], volume_ids: set[str],
                            image_snapshot_ids: Iterable[str], scope: str, policy: IdlePolicy,
                            prices: PriceTable, first_seen: Mapping[str, datetime],
                            now: datetime) -> list[Finding]:
    """Completed snapshots older than `snapshot_min_age_days` whose volume and AMI are gone.

    Snapshots this sweep took before deleting a volume are backups: orphaned by design, they
    are kept `backup_retention_days`.
    """
    backing = set(image_snapshot_ids)
    found = []
    for s in snapshots:
        min_age = policy.snapshot_min_age_days
        if ORIGIN_VOLUME_TAG in s.tags:
            min_age = max(min_age, policy.backup_retention_days)
        age = now - s.start_time
        if (s.state != "completed" or _kept(s, policy) or s.snapshot_id in backing
                or (s.volume_id and s.volume_id in volume_ids) or age < timedelta(days=min_age)):
            continue
        price = snapshot_monthly(prices, s.region, s.size_gb, s.storage_tier)
        found.append(_finding(
            ORPHANED_SNAPSHOT, s.snapshot_id, scope,
            f"{s.size_gb} GiB snapshot, {age.days} days old, of volume {s.volume_id or '?'} "
            f"which no longer exists, and no AMI uses it",
            price.usd, price.estimated,
            {"region": s.region, "size_gb": s.size_gb, "volume_id": s.volume_id,
             "age_days": age.days, "tier": s.storage_tier},
            first_seen, now,
        ))
    return found


# --- S3 ---------------------------------------------------------------------------------


def rule_prefix(rule: Mapping[str, Any]) -> str | None:
    """The prefix a lifecycle rule applies to, or None when it filters on more (tags, sizes)."""
    if "Filter" not in rule:
        return rule.get("Prefix", "")
    filt = rule["Filter"] or {}
    if set(filt) - {"Prefix"}:
        return None
    return filt.get("Prefix", "")


def lifecycle_covers(rules: Iterable[Mapping[str, Any]], prefix: str) -> str | None:
    """ID of an enabled lifecycle rule that already expires or transitions every object under
    `prefix`, or None."""
    for rule in rules:
        prefix_of_rule = rule_prefix(rule)
        if (rule.get("Status") == "Enabled" and (rule.get("Expiration") or rule.get("Transitions"))
                and prefix_of_rule is not None and prefix.startswith(prefix_of_rule)):
            return rule.get("ID") or "(unnamed)"
    return None


def expiration_rule(prefix: str, max_age_days: int) -> dict[str, Any]:
    """The lifecycle rule the sweep proposes instead of deleting objects one by one."""
    digest = hashlib.sha1(prefix.encode()).hexdigest()[:8]
    return {"ID": f"dataplatform-ops-expire-{digest}", "Status": "Enabled",
            "Filter": {"Prefix": prefix}, "Expiration": {"Days": max_age_days}}


@dataclass(frozen=True)
class S3Target:
    """One (bucket, prefix) to scan, and the lifecycle rule that would settle it."""

    bucket: str
    region: str
    prefix: str
    max_age_days: int


def s3_targets(buckets: Iterable[Any], policy: IdlePolicy) -> tuple[list[S3Target], list[str]]:
    """Which (bucket, prefix) pairs need an object scan, and notes on the ones skipped."""
    targets, notes = [], []
    for b in buckets:
        for rule in policy.s3_age_rules:
            if rule.bucket not in ("*", b.name):
                continue
            if _kept(b, policy):
                notes.append(f"s3://{b.name}: skipped, tagged {policy.opt_out_tag}")
                continue
            covering = lifecycle_covers(b.lifecycle_rules, rule.prefix)
            if covering:
                notes.append(f"s3://{b.name}/{rule.prefix}: lifecycle rule {covering} already handles it")
                continue
            targets.append(S3Target(b.name, b.region, rule.prefix, rule.max_age_days))
    return targets, notes


def find_stale_objects(tallies: Iterable[ObjectTally], account: str, prices: PriceTable,
                       first_seen: Mapping[str, datetime], now: datetime) -> list[Finding]:
    """One finding per (bucket, prefix) holding objects older than its age policy."""
    found = []
    for t in tallies:
        if not t.objects:
            continue
        cost, estimated = 0.0, False
        for storage_class, size in t.bytes_by_class.items():
            key_class = storage_class if prices.has(t.region, f"s3:{storage_class}:gb") else "STANDARD"
            p = s3_monthly(prices, t.region, key_class, size)
            cost, estimated = cost + p.usd, estimated or p.estimated
        total = sum(t.bytes_by_class.values())
        at_least = "at least " if t.truncated else ""
        reason = (f"{at_least}{t.objects:,} objects ({total / 1024**3:,.2f} GiB) older than "
                  f"{t.max_age_days} days and no lifecycle rule expires them")
        if t.truncated:
            reason += " (page budget reached: scan incomplete)"
        found.append(_finding(
            STALE_OBJECTS, f"s3://{t.bucket}/{t.prefix}", f"{account}/{t.region}", reason,
            round(cost, 4), estimated,
            {"region": t.region, "bucket": t.bucket, "prefix": t.prefix, "objects": t.objects,
             "bytes": total, "truncated": t.truncated, "source": t.source,
             "proposed_rule": expiration_rule(t.prefix, t.max_age_days)},
            first_seen, now,
        ))
    return found


# --- plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanItem:
    """One action the run offers for approval."""

    item_id: str  # the resource id: what a person approves
    action: str
    kind: str
    scope: str
    region: str
    monthly_cost_usd: float
    eligible: bool  # False while inside the grace period
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.scope.split("/", 1)[0]


def plan_actions(findings: Iterable[Finding], policy: IdlePolicy, now: datetime) -> list[PlanItem]:
    """What to do about each finding; findings seen idle for less than `grace_days` are
    marked (listed with the day they become eligible) but not offered."""
    plan = []
    for f in findings:
        since = datetime.fromisoformat(f.numbers["idle_since"])
        eligible_on = since + timedelta(days=policy.grace_days)
        eligible = now >= eligible_on
        detail = f.reason if eligible else f"marked; eligible on {eligible_on:%Y-%m-%d}. {f.reason}"
        plan.append(PlanItem(f.resource_id, ACTION_OF[f.kind], f.kind, f.scope, f.numbers["region"],
                             f.monthly_cost_usd or 0.0, eligible, detail, dict(f.numbers)))
    return sorted(plan, key=lambda p: (not p.eligible, -p.monthly_cost_usd, p.item_id))


def plan_rows(plan: Iterable[PlanItem]) -> list[dict[str, Any]]:
    return [{"approve_id": p.item_id, "action": p.action, "scope": p.scope,
             "monthly_usd": round(p.monthly_cost_usd, 2), "eligible": p.eligible,
             "detail": p.detail} for p in plan]
