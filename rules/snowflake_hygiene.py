"""Snowflake warehouse hygiene: settings that burn credits, and warehouses larger than their load.

Pure, over SHOW WAREHOUSES, SHOW RESOURCE MONITORS and 30 days of WAREHOUSE_METERING_HISTORY and
WAREHOUSE_LOAD_HISTORY. Every finding with money says what is at risk per month:
- auto-suspend off: the warehouse bills every hour it is left running (size x clusters x 730 h);
- auto-suspend longer than the limit: each time a burst of work ends, the warehouse idles that
  much longer before it suspends (counted from the metered hours: a metered hour followed by an
  unmetered one is a burst that ended) - an upper bound;
- no resource monitor (on the warehouse, nor one for the whole account): nothing caps its spend;
  at risk is what it spent in the last 30 days;
- oversized: it never queued and ran, on average, far below one cluster's capacity while active:
  one size down halves its credits per hour (at risk: half its spend; an estimate).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from rules.findings import Finding, Severity
from rules.snowflake import (
    HOURS_PER_MONTH,
    SnowflakePolicy,
    SnowflakePricing,
    credits_per_hour,
    smaller_size,
)

KIND_SUSPEND_OFF = "snowflake-auto-suspend-off"
KIND_SUSPEND_LONG = "snowflake-auto-suspend-long"
KIND_RESUME_OFF = "snowflake-auto-resume-off"
KIND_NO_MONITOR = "snowflake-no-resource-monitor"
KIND_OVERSIZED = "snowflake-oversized-warehouse"
SETTINGS_KINDS = frozenset({KIND_SUSPEND_OFF, KIND_SUSPEND_LONG, KIND_RESUME_OFF})


class SnowflakeHygienePolicy(SnowflakePolicy):
    """What counts as a wasteful warehouse setting."""

    pricing: SnowflakePricing = Field(default_factory=SnowflakePricing, description="Price per credit.")
    max_auto_suspend_seconds: int = Field(
        default=600, ge=60, description="Auto-suspend longer than this is reported (Snowflake's default is 600).",
    )
    require_resource_monitor: bool = Field(
        default=True, description="Report warehouses with no resource monitor when the account has none either.",
    )
    days: int = Field(default=30, ge=7, le=90, description="Days of metering and load history read.")
    oversized_max_running: float = Field(
        default=0.25, gt=0, le=1,
        description="A warehouse that never queued and ran on average below this load while active is oversized.",
    )
    oversized_min_intervals: int = Field(
        default=96, ge=1, description="Active 5-minute load intervals needed before judging size (96 = 8 hours).",
    )


@dataclass(frozen=True)
class Warehouse:
    """One row of SHOW WAREHOUSES."""

    account: str
    name: str
    size: str
    type: str = "STANDARD"
    auto_suspend: int | None = None  # seconds; None or 0: never
    auto_resume: bool = True
    resource_monitor: str | None = None
    min_clusters: int = 1


@dataclass(frozen=True)
class Load:
    """WAREHOUSE_LOAD_HISTORY summed up over the period, for intervals where the warehouse ran."""

    account: str
    warehouse: str
    intervals: int
    mean_running: float
    max_queued: float


@dataclass(frozen=True)
class HourCredits:
    account: str
    warehouse: str
    start: datetime
    credits: float


def bursts_ended(hours: Iterable[HourCredits]) -> dict[str, int]:
    """Per warehouse: metered hours not followed by another metered hour (a burst of work ended)."""
    metered: dict[str, set[datetime]] = defaultdict(set)
    for h in hours:
        if h.credits > 0:
            metered[h.warehouse].add(h.start)
    return {w: sum(1 for s in starts if s + timedelta(hours=1) not in starts) for w, starts in metered.items()}


def judge_warehouses(
    warehouses: Sequence[Warehouse],
    hours: Sequence[HourCredits] | None,
    loads: Sequence[Load] | None,
    monitors: Sequence[Mapping[str, str | None]] | None,
    policy: SnowflakeHygienePolicy,
) -> list[Finding]:
    """Findings for one account. `None` for a read that failed: its checks are skipped (and their
    $ figures unknown), never passed."""
    month = HOURS_PER_MONTH / (policy.days * 24)
    spent: dict[str, float] = defaultdict(float)
    for h in hours or []:
        spent[h.warehouse] += h.credits
    ended = bursts_ended(hours or [])
    load_of = {ld.warehouse: ld for ld in loads or []}
    account_monitor = any((m.get("level") or "").upper() == "ACCOUNT" for m in monitors or [])
    found: list[Finding] = []
    for w in warehouses:
        price = policy.pricing.price(w.account)
        per_hour = (credits_per_hour(w.size, w.type) or 0) * max(1, w.min_clusters)
        monthly = spent[w.name] * month * price if hours is not None else None
        base = {"warehouse": w.name, "size": w.size, "auto_suspend_s": w.auto_suspend, "credits_per_hour": per_hour}

        def add(kind: str, severity: Severity, reason: str, usd: float | None, w: Warehouse = w,
                base: dict = base, **numbers) -> None:
            found.append(Finding(kind=kind, resource_id=w.name, scope=w.account, severity=severity, reason=reason,
                                 numbers=base | numbers, monthly_cost_usd=None if usd is None else round(usd, 2)))

        if not w.auto_suspend:
            usd = per_hour * HOURS_PER_MONTH * price
            add(KIND_SUSPEND_OFF, Severity.CRITICAL,
                f"{w.name} ({w.size}) never suspends: left running it bills {per_hour:g} credits/h, "
                f"${usd:,.0f}/month. ALTER WAREHOUSE {w.name} SET AUTO_SUSPEND = 60.", usd)
        elif w.auto_suspend > policy.max_auto_suspend_seconds:
            extra_h = (w.auto_suspend - policy.max_auto_suspend_seconds) / 3600
            usd = ended.get(w.name, 0) * month * extra_h * per_hour * price if hours is not None else None
            add(KIND_SUSPEND_LONG, Severity.WARNING,
                f"{w.name} idles {w.auto_suspend} s before suspending (limit {policy.max_auto_suspend_seconds} s): "
                + (f"up to ${usd:,.2f}/month of idle time over {ended.get(w.name, 0)} bursts in {policy.days} days."
                   if usd is not None else "its metering could not be read, so the $ is unknown."),
                usd, bursts=ended.get(w.name, 0))
        if not w.auto_resume:
            add(KIND_RESUME_OFF, Severity.WARNING,
                f"{w.name} does not resume on its own: queries fail while it is suspended, which tempts people "
                f"to turn auto-suspend off. ALTER WAREHOUSE {w.name} SET AUTO_RESUME = TRUE.", None)
        if policy.require_resource_monitor and monitors is not None and not w.resource_monitor and not account_monitor:
            add(KIND_NO_MONITOR, Severity.WARNING,
                f"{w.name} has no resource monitor and the account has none: nothing caps its spend"
                + (f" (${monthly:,.2f} a month at its last {policy.days} days' rate)." if monthly is not None else "."),
                monthly)
        load = load_of.get(w.name)
        down = smaller_size(w.size)
        if (loads is not None and load and down and load.intervals >= policy.oversized_min_intervals
                and load.max_queued <= 0 and load.mean_running < policy.oversized_max_running):
            usd = monthly / 2 if monthly is not None else None
            add(KIND_OVERSIZED, Severity.INFO,
                f"{w.name} ({w.size}) never queued and ran at {load.mean_running:.2f} average load over "
                f"{load.intervals} active 5-minute intervals: {down} would do, at half the credits per hour"
                + (f" (about ${usd:,.2f}/month, an estimate: queries may run longer)." if usd is not None else "."),
                usd, mean_running=round(load.mean_running, 3), max_queued=load.max_queued, smaller=down)
    return found
