"""EBS right-sizing: gp2 -> gp3, over-provisioned io1/io2 IOPS, near-idle volumes, and
shrink candidates (which need a migration, never a snapshot restore: a volume restored from a
snapshot is at least the snapshot's size, and Elastic Volumes cannot shrink)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from rules.config import OPT_OUT_TAG, ActingPolicy, PricedPolicy, opted_out
from rules.findings import Finding, Severity
from rules.pricing import GP3_FREE_IOPS, GP3_FREE_THROUGHPUT, PriceTable, ebs_volume_monthly

KEEP_TAG = OPT_OUT_TAG
COOLDOWN = timedelta(hours=6)  # AWS: one modification per volume per 6 hours
GP2_MAX_IOPS = 16_000
GP3_MAX_IOPS, GP3_MAX_THROUGHPUT = 16_000, 1_000
GP3_IOPS_PER_GB, GP3_MIBPS_PER_IOPS = 500, 0.25  # AWS's ratios for a gp3 volume's settings


class EbsPolicy(ActingPolicy, PricedPolicy):
    repeat_interval_hours: float = Field(
        default=168, ge=1, description="Hours before a still-open finding is announced again (advice: weekly)."
    )
    lookback_days: int = Field(default=14, ge=1, le=63, description="Days of CloudWatch history to judge on.")
    io_headroom: float = Field(default=1.5, ge=1.0, description="Provisioned IOPS and throughput kept above the measured need (io1/io2 peak, gp3 p99), as a factor.")
    io_overprovision_ratio: float = Field(default=2.0, gt=1.0, description="Flag io1/io2 when provisioned IOPS exceed this multiple of what is needed.")
    idle_ops_per_day: float = Field(default=100, ge=0, description="An attached volume with fewer read+write operations per day on average is near-idle.")
    shrink_max_used_percent: float = Field(default=40, gt=0, lt=100, description="Shrink candidate when the filesystem never filled more than this.")
    shrink_target_used_percent: float = Field(default=70, gt=0, lt=100, description="How full the smaller volume should be at the observed peak.")
    shrink_min_size_gb: int = Field(default=50, ge=1, description="Smaller volumes are not worth a migration.")
    min_monthly_saving_usd: float = Field(default=1.0, ge=0, description="Report changes that save at least this per month.")


@dataclass(frozen=True)
class Activity:
    """What CloudWatch saw of a volume over the lookback."""

    peak_iops: float | None  # highest 1-minute read+write rate; None: no datapoints
    total_ops: float | None
    # 99th percentile over the lookback of each hour's busiest minute (read+write): what a gp3
    # volume must sustain. None: no datapoints.
    p99_iops: float | None = None
    p99_mibps: float | None = None


def p99(values: Iterable[float]) -> float | None:
    """The 99th percentile (nearest rank) of `values`; None when there are none."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else None


@dataclass(frozen=True)
class VolumeChange:
    """An online ModifyVolume this job can apply (after approval)."""

    volume_id: str
    region: str
    kind: str  # gp2-to-gp3 | lower-iops
    target_type: str
    target_iops: int | None
    target_throughput: int | None
    saving: float
    blocked: str | None = None  # opt-out tag or cooldown: planned, never applied
    estimated: bool = False  # a us-east-1 price stood in for a missing regional one

    def modify_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"VolumeId": self.volume_id, "VolumeType": self.target_type}
        if self.target_iops is not None:
            kwargs["Iops"] = self.target_iops
        if self.target_throughput is not None:
            kwargs["Throughput"] = self.target_throughput
        return kwargs


@dataclass(frozen=True)
class ShrinkCandidate:
    volume_id: str
    region: str
    instance_id: str
    device: str
    size_gb: int
    target_gb: int
    max_used_percent: float
    saving: float


@dataclass
class EbsReview:
    findings: list[Finding]
    changes: list[VolumeChange]
    shrinks: list[ShrinkCandidate]


def gp2_baseline(size_gb: int) -> tuple[int, int]:
    """gp2 baseline IOPS (3 per GB, 100..16,000) and throughput (128 MiB/s up to 170 GB, else 250)."""
    return min(GP2_MAX_IOPS, max(100, 3 * size_gb)), (128 if size_gb <= 170 else 250)


def gp3_target(size_gb: int, act: Activity, headroom: float, days: int) -> tuple[int, int, str]:
    """gp3 IOPS and throughput from measured use (p99 x headroom), never from gp2's burst
    figures; without metrics, gp3's free baseline unless gp2's baseline IOPS is above it.
    -> (iops, MiB/s, how they were chosen)."""
    if act.p99_iops is None:
        iops = max(GP3_FREE_IOPS, gp2_baseline(size_gb)[0])
        return iops, GP3_FREE_THROUGHPUT, "no CloudWatch history: gp2's baseline IOPS, gp3's free throughput"
    throughput = min(GP3_MAX_THROUGHPUT, max(GP3_FREE_THROUGHPUT,
                                             math.ceil((act.p99_mibps or 0) * headroom)))
    iops = max(GP3_FREE_IOPS, math.ceil(act.p99_iops * headroom / 100) * 100,
               math.ceil(throughput / GP3_MIBPS_PER_IOPS))
    iops = min(iops, GP3_MAX_IOPS, max(GP3_FREE_IOPS, GP3_IOPS_PER_GB * size_gb))
    return iops, throughput, (f"measured p99 {act.p99_iops:,.0f} IOPS / {act.p99_mibps or 0:,.1f} MiB/s "
                              f"in {days} days x {headroom:g} headroom")


def _usd(saving: float, estimated: bool) -> str:
    return f"${saving:,.2f}/month" + (" (estimated price)" if estimated else "")


def _cooldown(volume_id: str, last_modified: Mapping[str, tuple[str, datetime]], now: datetime) -> str | None:
    if volume_id not in last_modified:
        return None
    state, started = last_modified[volume_id]
    if state in ("modifying", "optimizing"):
        return f"a modification is still {state}"
    if now - started < COOLDOWN:
        return f"modified at {started:%Y-%m-%d %H:%M} UTC: AWS allows the next change after {started + COOLDOWN:%H:%M} UTC"
    return None


def review_volumes(
    volumes: Iterable,
    activity: Mapping[str, Activity],
    disk_used: Mapping[str, tuple[str, str, float]],
    last_modified: Mapping[str, tuple[str, datetime]],
    policy: EbsPolicy,
    table: PriceTable,
    now: datetime,
) -> EbsReview:
    """Judge every volume. `disk_used` maps a volume to (instance, device, max used %) from the
    CloudWatch agent; `last_modified` to (modification state, start time)."""
    review = EbsReview([], [], [])
    for v in volumes:
        scope = v.region
        current = ebs_volume_monthly(table, v.region, v.volume_type, v.size_gb, v.iops, v.throughput)
        cost = current.usd
        blocked = f"opt-out tag {KEEP_TAG}" if opted_out(v.tags) else _cooldown(v.volume_id, last_modified, now)
        act = activity.get(v.volume_id, Activity(None, None))

        change = None
        if v.volume_type == "gp2":
            iops, throughput, basis = gp3_target(v.size_gb, act, policy.io_headroom, policy.lookback_days)
            as_gp3 = ebs_volume_monthly(table, v.region, "gp3", v.size_gb, iops, throughput)
            saving, estimated = round(cost - as_gp3.usd, 2), current.estimated or as_gp3.estimated
            reason = (f"gp2 {v.size_gb} GB -> gp3 at {iops} IOPS / {throughput} MiB/s ({basis}): "
                      f"saves {_usd(saving, estimated)}, online")
            change = VolumeChange(v.volume_id, v.region, "gp2-to-gp3", "gp3", iops, throughput, saving, blocked,
                                  estimated)
        elif v.volume_type in ("io1", "io2") and v.iops and act.peak_iops is not None:
            needed = max(100, math.ceil(act.peak_iops * policy.io_headroom / 100) * 100)
            if v.iops > policy.io_overprovision_ratio * needed:
                saving = round(cost - ebs_volume_monthly(table, v.region, v.volume_type, v.size_gb, needed).usd, 2)
                # The storage price cancels out: the saving is the IOPS price's alone.
                estimated = table.get(v.region, f"ebs:{v.volume_type}:iops").estimated
                reason = (f"{v.volume_type} provisioned {v.iops} IOPS, peak observed {act.peak_iops:,.0f} in "
                          f"{policy.lookback_days} days -> {needed} IOPS: saves {_usd(saving, estimated)}")
                change = VolumeChange(v.volume_id, v.region, "lower-iops", v.volume_type, needed, None, saving, blocked,
                                      estimated)
        if change and change.saving >= policy.min_monthly_saving_usd:
            review.changes.append(change)
            review.findings.append(Finding(
                kind=f"ebs-{change.kind}", resource_id=v.volume_id, scope=scope, severity=Severity.INFO,
                reason=reason + (f" (not applied: {blocked})" if blocked else ""),
                numbers={"size_gb": v.size_gb, "type": v.volume_type, "iops": v.iops,
                         "target_iops": change.target_iops, "target_throughput": change.target_throughput,
                         "peak_iops": act.peak_iops, "p99_iops": act.p99_iops, "p99_mibps": act.p99_mibps,
                         "price_estimated": change.estimated},
                monthly_cost_usd=change.saving))

        if v.attached_to and act.total_ops is not None and act.total_ops < policy.idle_ops_per_day * policy.lookback_days:
            review.findings.append(Finding(
                kind="ebs-near-idle", resource_id=v.volume_id, scope=scope, severity=Severity.WARNING,
                reason=(f"attached to {', '.join(v.attached_to)} but only {act.total_ops:,.0f} read/write "
                        f"operations in {policy.lookback_days} days: snapshot and delete it if unused"),
                numbers={"total_ops": act.total_ops, "size_gb": v.size_gb, "price_estimated": current.estimated},
                monthly_cost_usd=round(cost, 2)))

        used = disk_used.get(v.volume_id)
        if used and v.size_gb >= policy.shrink_min_size_gb and used[2] <= policy.shrink_max_used_percent:
            used_gb = v.size_gb * used[2] / 100
            target = max(8, math.ceil(used_gb / (policy.shrink_target_used_percent / 100) / 10) * 10)
            if target < v.size_gb:
                saving = round(cost - ebs_volume_monthly(table, v.region, v.volume_type, target, v.iops, v.throughput).usd, 2)
                if saving >= policy.min_monthly_saving_usd:
                    review.shrinks.append(ShrinkCandidate(v.volume_id, v.region, used[0], used[1], v.size_gb,
                                                          target, used[2], saving))
                    review.findings.append(Finding(
                        kind="ebs-shrink-candidate", resource_id=v.volume_id, scope=scope, severity=Severity.INFO,
                        reason=(f"{v.size_gb} GB, at most {used[2]:.0f}% used in {policy.lookback_days} days -> "
                                f"{target} GB saves {_usd(saving, current.estimated)}; needs a migration (see the "
                                "shrink plan), a snapshot restore cannot shrink"),
                        numbers={"size_gb": v.size_gb, "target_gb": target, "max_used_percent": used[2],
                                 "price_estimated": current.estimated},
                        monthly_cost_usd=saving))
    return review


def shrink_plan_markdown(candidates: Iterable[ShrinkCandidate]) -> str:
    """A step-by-step migration per candidate: new smaller volume, copy, swap, rollback."""
    lines = ["# EBS shrink plan", "",
             "AWS cannot shrink a volume, and a volume created from a snapshot is at least the "
             "snapshot's size. Each shrink is a migration to a new, smaller volume:", ""]
    for c in candidates:
        lines += [
            f"## {c.volume_id} on {c.instance_id} ({c.device}, {c.region}): {c.size_gb} GB -> {c.target_gb} GB",
            f"Peak use {c.max_used_percent:.0f}%, saves ${c.saving:,.2f}/month.", "",
            f"1. Snapshot {c.volume_id} (the rollback point) and note its filesystem UUID and mount options.",
            f"2. Create a {c.target_gb} GB volume of the same type, AZ, encryption and KMS key; attach it to "
            f"{c.instance_id} as a spare device.",
            "3. Make the filesystem (same type and label) and mount it on a temporary path.",
            "4. Copy while the service runs: `rsync -aHAXx --numeric-ids <old>/ <new>/` "
            "(or `xfsdump | xfsrestore` for XFS).",
            "5. Stop the service, run the rsync again for the last changes, unmount both.",
            "6. Swap: point `/etc/fstab` (UUID) at the new volume, mount it on the original path, start the service.",
            f"7. Rollback: remount {c.volume_id} from the old fstab entry (or a volume restored from the step-1 "
            "snapshot). Keep the old volume detached for a week, then delete it.",
            "Root volumes need the instance stopped and the copy made from a helper instance.", "",
        ]
    return "\n".join(lines)
