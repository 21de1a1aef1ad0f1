"""S3 Intelligent-Tiering: which buckets gain from a lifecycle transition, and by how much.

Objects under 128 KB are never tiered (they stay at the Frequent Access price and pay no
monitoring fee), so the transition rule filters them out and the estimate ignores them. The
bucket-level Intelligent-Tiering configuration only enables the optional archive tiers;
moving objects in takes a lifecycle transition, which is what this job adds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from rules.config import OPT_OUT_TAG, ActingPolicy, PricedPolicy, opted_out
from rules.findings import Finding, Severity
from rules.pricing import PriceTable

KIND = "s3-intelligent-tiering"
KEEP_TAG = OPT_OUT_TAG
RULE_ID = "dataplatform-ops-intelligent-tiering"
SMALL_OBJECT_BYTES = 128 * 1024
GIB = 1024**3


class TieringPolicy(ActingPolicy, PricedPolicy):
    repeat_interval_hours: float = Field(
        default=168, ge=1, description="Hours before a still-open finding is announced again (advice: weekly)."
    )
    min_standard_gb: float = Field(default=100, ge=0, description="Only buckets with at least this much STANDARD storage.")
    expected_infrequent_share: float = Field(
        default=0.5, ge=0, le=1,
        description="Share of eligible bytes expected to sit untouched for 30+ days (Infrequent Access tier).")
    transition_after_days: int = Field(default=0, ge=0, description="Days after creation before an object moves to INTELLIGENT_TIERING.")
    min_monthly_saving_usd: float = Field(default=5.0, ge=0, description="Recommend only when the net saving is at least this.")
    sample_pages: int = Field(default=10, ge=1, le=1000, description="ListObjectsV2 pages (1,000 objects each) sampled per bucket for the small-object share.")
    archive_access_days: int | None = Field(
        default=None, ge=90, le=730,
        description="Also enable the Archive Access tier after this many days without access (optional; restores take hours).")
    deep_archive_access_days: int | None = Field(
        default=None, ge=180, le=730,
        description="Also enable the Deep Archive Access tier after this many days without access (optional).")


@dataclass(frozen=True)
class BucketUsage:
    """What CloudWatch and an object sample say about a bucket."""

    bytes_by_class: dict[str, float]  # STANDARD, INTELLIGENT_TIERING, ...
    objects: float  # NumberOfObjects (all storage types)
    small_count_share: float  # share of sampled objects under 128 KB
    small_bytes_share: float  # share of sampled bytes in objects under 128 KB


@dataclass(frozen=True)
class TieringChange:
    bucket: str
    region: str
    rule: dict[str, Any]
    saving: float
    archive: dict[str, Any] | None = None  # bucket Intelligent-Tiering configuration, if asked for


def transition_rule(policy: TieringPolicy) -> dict[str, Any]:
    return {
        "ID": RULE_ID,
        "Status": "Enabled",
        "Filter": {"ObjectSizeGreaterThan": SMALL_OBJECT_BYTES},
        "Transitions": [{"Days": policy.transition_after_days, "StorageClass": "INTELLIGENT_TIERING"}],
    }


def archive_configuration(policy: TieringPolicy) -> dict[str, Any] | None:
    """The bucket-level configuration that turns on the optional archive tiers."""
    tierings = [{"Days": days, "AccessTier": tier} for days, tier in (
        (policy.archive_access_days, "ARCHIVE_ACCESS"), (policy.deep_archive_access_days, "DEEP_ARCHIVE_ACCESS"))
        if days is not None]
    return {"Id": RULE_ID, "Status": "Enabled", "Tierings": tierings} if tierings else None


def _covers_whole_bucket(rule: Mapping[str, Any]) -> bool:
    flt = rule.get("Filter", {})
    prefix = flt.get("Prefix", rule.get("Prefix", ""))
    return (rule.get("Status") == "Enabled" and not prefix and "Tag" not in flt and "And" not in flt
            and any(t.get("StorageClass") == "INTELLIGENT_TIERING" for t in rule.get("Transitions", [])))


def review_buckets(buckets: Iterable, usage: Mapping[str, BucketUsage], policy: TieringPolicy,
                   table: PriceTable) -> tuple[list[Finding], list[TieringChange]]:
    """Recommend the Intelligent-Tiering transition where it saves more than it costs to monitor."""
    findings, changes = [], []
    for b in buckets:
        u = usage.get(b.name)
        if u is None:
            continue
        standard = u.bytes_by_class.get("STANDARD", 0.0)
        if standard / GIB < policy.min_standard_gb:
            continue
        if any(r.get("ID") != RULE_ID and _covers_whole_bucket(r) for r in b.lifecycle_rules):
            continue
        eligible_gb = standard * (1 - u.small_bytes_share) / GIB
        eligible_objects = u.objects * (1 - u.small_count_share)
        delta = table.get(b.region, "s3:STANDARD:gb").usd - table.get(b.region, "s3:it-infrequent:gb").usd
        saving = eligible_gb * policy.expected_infrequent_share * delta
        fee = eligible_objects / 1000 * table.get(b.region, "s3:it-monitoring:1000-objects").usd
        transition_once = eligible_objects / 1000 * table.get(b.region, "s3:transition-it:1000-requests").usd
        net = round(saving - fee, 2)
        if net < policy.min_monthly_saving_usd:
            continue
        rule = transition_rule(policy)
        # Compare what matters: S3 implementations normalise the filter on the way back.
        done = any(r.get("ID") == RULE_ID and r.get("Status") == "Enabled"
                   and r.get("Transitions") == rule["Transitions"] for r in b.lifecycle_rules)
        keep = opted_out(b.tags)
        note = (" (already applied)" if done else "") + (f" (not applied: opt-out tag {KEEP_TAG})" if keep else "")
        findings.append(Finding(
            kind=KIND, resource_id=b.name, scope=b.region, severity=Severity.INFO,
            reason=(f"{standard / GIB:,.0f} GB in STANDARD, {u.small_count_share:.0%} of objects under 128 KB "
                    f"(never tiered): moving objects over 128 KB to INTELLIGENT_TIERING saves about "
                    f"${saving:,.2f}/month if {policy.expected_infrequent_share:.0%} goes cold, minus "
                    f"${fee:,.2f}/month monitoring; one-off transition requests ${transition_once:,.2f}"
                    f"; {len(b.lifecycle_rules)} existing lifecycle rules are kept{note}"),
            numbers={"standard_gb": round(standard / GIB, 1), "objects": u.objects,
                     "small_count_share": round(u.small_count_share, 3), "saving_usd": round(saving, 2),
                     "monitoring_usd": round(fee, 2), "transition_once_usd": round(transition_once, 2)},
            monthly_cost_usd=net))
        if not done and not keep:
            changes.append(TieringChange(b.name, b.region, rule, net, archive_configuration(policy)))
    return findings, changes


def small_object_shares(sizes: Iterable[int]) -> tuple[float, float]:
    """(share of objects, share of bytes) under 128 KB in a sample; (0, 0) for an empty one."""
    count = small = total = small_bytes = 0
    for size in sizes:
        count += 1
        total += size
        if size < SMALL_OBJECT_BYTES:
            small += 1
            small_bytes += size
    return (small / count, small_bytes / total if total else 0.0) if count else (0.0, 0.0)
