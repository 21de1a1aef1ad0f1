"""The AWS bill: daily cost by service and account, month to date against the same days of last
month, a run-rate forecast, anomalies against each series' own weekday baseline, and what the
bill shows after an applied action against what the action claimed.

Pure: the lines come from Cost Explorer (`tasks/aws/cost_explorer.py`), the applied actions from
the store; `today` is a parameter.
"""

from __future__ import annotations

import calendar
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rules.findings import Finding, Severity
from rules.pricing import HOURS_PER_MONTH

ANOMALY = "aws-cost-anomaly"
TOTAL = "(all services)"
DAYS_PER_MONTH = HOURS_PER_MONTH / 24  # 30.4: the month every $/month figure here means

# The Cost Explorer SERVICE line an applied action's finding kind shows up on.
SERVICE_OF_KIND = {
    "idle-elastic-ip": "Amazon Virtual Private Cloud",  # public IPv4 bills under VPC since 2024
    "unattached-volume": "EC2 - Other", "orphaned-snapshot": "EC2 - Other", "idle-nat-gateway": "EC2 - Other",
    "gp2-to-gp3": "EC2 - Other", "lower-iops": "EC2 - Other",
    "stale-s3-objects": "Amazon Simple Storage Service",
    "s3-incomplete-multipart-uploads": "Amazon Simple Storage Service",
    "s3-noncurrent-versions-kept": "Amazon Simple Storage Service",
    "intelligent-tiering-candidate": "Amazon Simple Storage Service",
    "log-group-without-retention": "AmazonCloudWatch",
    "dynamodb-underused-provisioned": "Amazon DynamoDB",
    "sagemaker-notebook-left-running": "Amazon SageMaker",
}


class AwsCostPolicy(BaseModel):
    """What the AWS cost report reads and when a day counts as an anomaly."""

    model_config = ConfigDict(extra="forbid")

    history_days: int = Field(default=42, ge=14, le=365,
                              description="Days of daily cost read each run (at least back to the 1st of last month).")
    baseline_weeks: int = Field(default=4, ge=2, le=12,
                                description="A day is compared with the same weekday of this many weeks before it.")
    anomaly_ratio: float = Field(default=0.5, gt=0,
                                 description="A day this share above its weekday baseline is an anomaly (0.5 = +50%).")
    anomaly_min_usd: float = Field(default=10.0, ge=0,
                                   description="... and at least this many USD above it (small series stay quiet).")
    anomaly_days: int = Field(default=3, ge=1, le=14,
                              description="The last complete days judged each run (Cost Explorer revises recent days).")
    tag_keys: list[str] = Field(default_factory=list,
                                description="Cost-allocation tag keys to report cost by (one Cost Explorer call each).")
    savings_window_days: int = Field(default=7, ge=1, le=30,
                                     description="Days of the service's cost before and after an applied action compared.")
    savings_min_days: int = Field(default=3, ge=1,
                                  description="Days after an action the bill must show before its realised saving is given.")


@dataclass(frozen=True)
class CostLine:
    """One day's cost of one service in one (linked) account, as Cost Explorer reports it."""

    day: date
    service: str
    account: str
    usd: float
    estimated: bool = False  # Cost Explorer's own flag: the day is not final yet


@dataclass(frozen=True)
class TagLine:
    day: date
    key: str
    value: str  # "" for resources without the tag
    usd: float


def read_window(today: date, policy: AwsCostPolicy) -> tuple[date, date]:
    """[start, end) to read: `history_days` back, at least the 1st of last month; up to yesterday."""
    first_of_last = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return min(today - timedelta(days=policy.history_days), first_of_last), today


def _by_day(lines: Iterable[CostLine], key: Any = lambda line: line.service) -> dict[Any, dict[date, float]]:
    series: dict[Any, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for line in lines:
        series[key(line)][line.day] += line.usd
    return series


def month_to_date(lines: Sequence[CostLine], today: date) -> list[dict[str, Any]]:
    """Per service: this month up to yesterday against the same days of last month; a total row last."""
    yesterday = today - timedelta(days=1)
    first = yesterday.replace(day=1)
    last_first = (first - timedelta(days=1)).replace(day=1)
    last_end = last_first.replace(day=min(yesterday.day, calendar.monthrange(last_first.year, last_first.month)[1]))
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for line in lines:
        if first <= line.day <= yesterday:
            rows[line.service][0] += line.usd
        elif last_first <= line.day <= last_end:
            rows[line.service][1] += line.usd
    table = [_mtd_row(service, now, before) for service, (now, before) in
             sorted(rows.items(), key=lambda kv: -kv[1][0])]
    total_now, total_before = sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())
    return [*table, _mtd_row(TOTAL, total_now, total_before)]


def _mtd_row(service: str, now: float, before: float) -> dict[str, Any]:
    change = f"{(now - before) / before:+.0%}" if before else "new"
    return {"service": service, "month_to_date_usd": round(now, 2), "same_days_last_month_usd": round(before, 2),
            "change_usd": round(now - before, 2), "change": change}


def run_rate_forecast(lines: Sequence[CostLine], today: date, days: int = 7) -> float:
    """This month's total if the last `days` complete days' average holds until its end."""
    yesterday = today - timedelta(days=1)
    first = yesterday.replace(day=1)
    daily = _by_day(lines, key=lambda line: TOTAL)[TOTAL]
    recent = [daily.get(yesterday - timedelta(days=i), 0.0) for i in range(days)]
    month_end = yesterday.replace(day=calendar.monthrange(yesterday.year, yesterday.month)[1])
    spent = sum(v for d, v in daily.items() if first <= d <= yesterday)
    return round(spent + statistics.fmean(recent) * (month_end - yesterday).days, 2)


def weekday_baseline(series: Mapping[date, float], day: date, weeks: int) -> float | None:
    """The median of the same weekday over the `weeks` weeks before `day` (a missing day costs 0);
    None when fewer than two of those weeks are inside the data."""
    earliest = min(series, default=day)
    samples = [series.get(day - timedelta(weeks=w), 0.0) for w in range(1, weeks + 1)
               if day - timedelta(weeks=w) >= earliest]
    return statistics.median(samples) if len(samples) >= 2 else None


def anomalies(lines: Sequence[CostLine], payer: str, today: date, policy: AwsCostPolicy) -> list[Finding]:
    """Days among the last `anomaly_days` where a service (or the total) rose well above its weekday
    baseline; each names the accounts whose cost of that service moved most."""
    per_service = _by_day(lines)
    per_service[TOTAL] = _by_day(lines, key=lambda line: TOTAL)[TOTAL]
    per_account = _by_day(lines, key=lambda line: (line.service, line.account))
    found = []
    for offset in range(1, policy.anomaly_days + 1):
        day = today - timedelta(days=offset)
        for service, series in sorted(per_service.items()):
            cost, baseline = series.get(day, 0.0), weekday_baseline(series, day, policy.baseline_weeks)
            if baseline is None:
                continue
            rise = cost - baseline
            if rise < policy.anomaly_min_usd or cost <= baseline * (1 + policy.anomaly_ratio):
                continue
            movers = _movers(per_account, service, day, policy.baseline_weeks)
            moved = ", ".join(f"{a} {d:+,.2f}" for a, d in movers[:3])
            share = f"+{rise / baseline:.0%}" if baseline else "from nothing"
            found.append(Finding(
                kind=ANOMALY, resource_id=f"{day.isoformat()}/{service}", scope=payer,
                severity=Severity.CRITICAL if cost >= 2 * baseline + policy.anomaly_min_usd else Severity.WARNING,
                reason=(f"{service} cost ${cost:,.2f} on {day:%a %Y-%m-%d}, against ${baseline:,.2f} on the same "
                        f"weekday before (median of {policy.baseline_weeks} weeks): +${rise:,.2f} ({share})"
                        + (f"; accounts that moved: {moved}" if moved else "")),
                numbers={"day": day.isoformat(), "service": service, "usd": round(cost, 2),
                         "baseline_usd": round(baseline, 2), "rise_usd": round(rise, 2),
                         "accounts": {a: round(d, 2) for a, d in movers}}))
    return found


def _movers(per_account: Mapping[tuple[str, str], Mapping[date, float]], service: str, day: date,
            weeks: int) -> list[tuple[str, float]]:
    moves = []
    for (svc, account), series in per_account.items():
        if service not in (svc, TOTAL):
            continue
        baseline = weekday_baseline(series, day, weeks) or 0.0
        moves.append((account, series.get(day, 0.0) - baseline))
    merged: dict[str, float] = defaultdict(float)
    for account, delta in moves:
        merged[account] += delta
    return sorted(((a, d) for a, d in merged.items() if d > 0), key=lambda ad: -ad[1])


@dataclass(frozen=True)
class AppliedAction:
    """An action a person approved and a job applied, with what its finding claimed per month."""

    job: str
    action: str
    resource_id: str
    scope: str  # account/region
    at: datetime
    kind: str | None = None
    claimed_monthly_usd: float | None = None

    @property
    def account(self) -> str:
        return self.scope.split("/", 1)[0]


@dataclass
class SavingsLine:
    action: AppliedAction
    service: str | None
    before_daily_usd: float | None = None
    after_daily_usd: float | None = None
    days_after: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def realised_monthly_usd(self) -> float | None:
        if self.before_daily_usd is None or self.after_daily_usd is None:
            return None
        return round((self.before_daily_usd - self.after_daily_usd) * DAYS_PER_MONTH, 2)

    def row(self) -> dict[str, Any]:
        a, realised = self.action, self.realised_monthly_usd
        claimed = a.claimed_monthly_usd
        return {"applied": a.at.date().isoformat(), "job": a.job, "action": a.action, "resource": a.resource_id,
                "claimed_monthly_usd": claimed, "bill_line": f"{a.account} {self.service or '?'}",
                "before_usd_per_day": self.before_daily_usd, "after_usd_per_day": self.after_daily_usd,
                "realised_monthly_usd": realised,
                "realised_share": f"{realised / claimed:.0%}" if realised is not None and claimed else None,
                "note": "; ".join(self.notes)}


def realised_savings(actions: Iterable[AppliedAction], lines: Sequence[CostLine], today: date,
                     policy: AwsCostPolicy) -> list[SavingsLine]:
    """Per applied action: its account's line for the service it bills on, the `savings_window_days`
    before the action day against the days after it (up to yesterday). The line moves for other
    reasons too: this is what the bill shows, next to what the action claimed."""
    per_line = _by_day(lines, key=lambda line: (line.account, line.service))
    earliest = min((line.day for line in lines), default=today)  # a day without a line cost nothing
    window = timedelta(days=policy.savings_window_days)
    out = []
    for a in sorted(actions, key=lambda a: a.at):
        service = SERVICE_OF_KIND.get(a.kind or "")
        line = SavingsLine(a, service)
        out.append(line)
        if service is None:
            line.notes.append(f"no bill line known for {a.kind or 'this action'}")
            continue
        series = per_line.get((a.account, service), {})
        day = a.at.date()
        before = [series.get(day - timedelta(days=i), 0.0) for i in range(1, policy.savings_window_days + 1)]
        after_days = [day + timedelta(days=i) for i in range(1, policy.savings_window_days + 1)
                      if day + timedelta(days=i) < today]
        line.days_after = len(after_days)
        if len(after_days) < policy.savings_min_days:
            line.notes.append(f"{len(after_days)} days of bill since; the saving shows after {policy.savings_min_days}")
            continue
        if day - window < earliest:
            line.notes.append("the bill read does not reach far enough before the action")
            continue
        line.before_daily_usd = round(statistics.fmean(before), 2)
        line.after_daily_usd = round(statistics.fmean(series.get(d, 0.0) for d in after_days), 2)
    return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def metric_rows(lines: Iterable[CostLine]) -> list[dict[str, Any]]:
    """History: one point per day, linked account and service."""
    return [{"subject": f"{line.account}/{line.service}", "ts": _midnight(line.day),
             "value": round(line.usd, 4), "labels": {"account": line.account, "service": line.service,
                                                      "estimated": line.estimated}}
            for line in lines]


def tag_metric_rows(lines: Iterable[TagLine]) -> list[dict[str, Any]]:
    return [{"subject": f"{line.key}={line.value or '(untagged)'}",
             "ts": _midnight(line.day), "value": round(line.usd, 4),
             "labels": {"tag": line.key, "value": line.value}} for line in lines]
