"""Snowflake spend: credits and $ per account, warehouse, user and UTC day.

Pure judgement over what `tasks/snowflake_usage.py` reads from SNOWFLAKE.ACCOUNT_USAGE:
- warehouse credits come from WAREHOUSE_METERING_HISTORY (what is billed, per hour);
- a warehouse-day's compute is split between users by QUERY_ATTRIBUTION_HISTORY (Snowflake's own
  per-query attribution, without idle time); where that view has no rows (not available, or not
  yet: it lags up to 8 hours) it is estimated from QUERY_HISTORY execution time x warehouse size,
  scaled down to what was metered when concurrent queries add up to more, and marked `estimated`;
  what no query explains is the warehouse's idle time, its own line;
- cloud services credits are billed only above 10 % of the day's warehouse compute (per account
  and UTC day); the billed part is shared out over the warehouses by their cloud services use.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from pydantic import Field

from rules.findings import Finding, Severity
from rules.snowflake import (
    SnowflakePolicy,
    SnowflakePricing,
    billed_cloud_services,
    credits_per_hour,
)
from rules.text import mask_sql_literals
from rules.text import window_note as text_window_note

IDLE = "(idle)"
CLOUD_SERVICES = "(cloud services)"
UNATTRIBUTED = "(unattributed)"
LATENCY_NOTE = ("ACCOUNT_USAGE lags: metering up to 3 h (cloud services up to 6 h), query history "
                "up to 45 min, attribution up to 8 h; the last hours of a day can still grow, and a "
                "re-run of the same days replaces their figures.")


class SnowflakeCostReportPolicy(SnowflakePolicy):
    """What the Snowflake cost report covers and how it prices credits."""

    pricing: SnowflakePricing = Field(default_factory=SnowflakePricing, description="Price per credit.")
    days: int = Field(default=1, ge=1, le=31, description="Days in the reported period.")
    top_queries: int = Field(default=10, ge=0, le=100, description="Most expensive queries listed.")
    query_chars: int = Field(default=300, ge=20, le=5000, description="Query text shown per query (literals masked).")
    use_attribution: bool = Field(
        default=True,
        description="Split warehouse credits by QUERY_ATTRIBUTION_HISTORY where it has rows; off: "
                    "always estimate from QUERY_HISTORY execution time x warehouse size.",
    )


# --- records (one row of an aggregate the task reads) -----------------------------------


@dataclass(frozen=True)
class MeteredHour:
    """WAREHOUSE_METERING_HISTORY: one warehouse, one hour."""

    account: str
    warehouse: str
    start: datetime
    compute: float
    cloud_services: float

    @property
    def day(self) -> date:
        return self.start.astimezone(timezone.utc).date()


@dataclass(frozen=True)
class UserUsage:
    """One user's queries on one warehouse and UTC day: attributed credits, or execution time."""

    account: str
    warehouse: str
    user: str
    day: date
    queries: int
    credits: float = 0.0  # QUERY_ATTRIBUTION_HISTORY
    execution_ms: float = 0.0  # QUERY_HISTORY
    warehouse_size: str = ""  # QUERY_HISTORY


@dataclass(frozen=True)
class CostlyQuery:
    """A candidate for the top queries: attributed credits, or execution time and size."""

    account: str
    query_id: str
    warehouse: str
    user: str
    start: datetime
    query_text: str = ""
    credits: float | None = None  # attributed
    execution_ms: float = 0.0
    warehouse_size: str = ""

    def credits_used(self) -> tuple[float, bool]:
        """Credits, and whether they are an estimate (execution time x size)."""
        if self.credits is not None:
            return self.credits, False
        return self.execution_ms / 3_600_000 * (credits_per_hour(self.warehouse_size) or 0), True


# --- the report --------------------------------------------------------------------------


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


@dataclass(frozen=True)
class ReportWindow:
    """The reported days [start, end), and the period of the same length before them."""

    start: datetime
    end: datetime
    previous_start: datetime


def report_window(last_day: date, days: int) -> ReportWindow:
    end = day_start(last_day + timedelta(days=1))
    start = end - timedelta(days=days)
    return ReportWindow(start, end, start - timedelta(days=days))


@dataclass(frozen=True)
class CostLine:
    """Credits and $ of one user (or the idle time, or cloud services) on one warehouse and day."""

    account: str
    warehouse: str
    user: str
    day: date
    method: str  # attributed | estimated | idle | cloud services | unattributed
    queries: int
    credits: float
    usd: float

    @property
    def estimate(self) -> bool:
        return self.method == "estimated"


@dataclass(frozen=True)
class AccountTotal:
    account: str
    compute_credits: float
    cloud_services_used: float
    cloud_services_billed: float
    usd: float
    previous_usd: float

    @property
    def credits_billed(self) -> float:
        return self.compute_credits + self.cloud_services_billed


@dataclass
class CostReport:
    lines: list[CostLine]
    totals: list[AccountTotal]
    top_queries: list[dict]

    @property
    def usd(self) -> float:
        return sum(t.usd for t in self.totals)


def _split(compute: float, shares: Mapping[str, float]) -> dict[str, float]:
    """User shares of a warehouse-day, scaled down when they add up to more than was metered."""
    total = sum(shares.values())
    factor = compute / total if total > compute > 0 else (0.0 if compute <= 0 else 1.0)
    return {user: credits * factor for user, credits in shares.items()}


def billed_by_day(metered: Iterable[MeteredHour]) -> dict[tuple[str, date], tuple[float, float, float]]:
    """(account, day) -> compute, cloud services used, cloud services billed."""
    compute: dict[tuple[str, date], float] = defaultdict(float)
    services: dict[tuple[str, date], float] = defaultdict(float)
    for m in metered:
        compute[(m.account, m.day)] += m.compute
        services[(m.account, m.day)] += m.cloud_services
    return {k: (compute[k], services[k], billed_cloud_services(compute[k], services[k])) for k in compute}


def warehouse_day_lines(
    account: str, warehouse: str, day: date, compute: float, cloud_services_billed: float,
    attributed: Sequence[UserUsage], executed: Sequence[UserUsage], queries_known: bool, price: float,
) -> list[CostLine]:
    """The lines of one warehouse on one day: users, idle time, billed cloud services."""
    lines = []

    def line(user: str, method: str, queries: int, credits: float) -> None:
        lines.append(CostLine(account, warehouse, user, day, method, queries, credits, credits * price))

    if attributed:
        method, usage = "attributed", attributed
        shares = _split(compute, {u.user: u.credits for u in attributed})
    else:
        method, usage = "estimated", executed
        shares = _split(compute, {u.user: u.execution_ms / 3_600_000 * (credits_per_hour(u.warehouse_size) or 0)
                                  for u in executed})
    counts: dict[str, int] = defaultdict(int)
    for u in usage:
        counts[u.user] += u.queries
    for user in sorted(shares):
        line(user, method, counts[user], shares[user])
    rest = compute - sum(shares.values())
    if rest > 1e-9:
        line(IDLE if queries_known else UNATTRIBUTED, "idle" if queries_known else "unattributed", 0, rest)
    if cloud_services_billed > 1e-12:
        line(CLOUD_SERVICES, "cloud services", 0, cloud_services_billed)
    return lines


def cost_report(
    metered: Sequence[MeteredHour],
    attributed: Sequence[UserUsage],
    executed: Sequence[UserUsage],
    candidates: Sequence[CostlyQuery],
    policy: SnowflakeCostReportPolicy,
    window: ReportWindow,
    queries_known: Mapping[str, bool],
) -> CostReport:
    """Lines per account/warehouse/user/day in the window, totals with the previous period, top queries.

    `metered` covers the previous period too; `queries_known[account]` is False when neither
    attribution nor query history could be read (then unexplained credits are "unattributed").
    """
    in_window = [m for m in metered if window.start <= day_start(m.day) < window.end]
    per_day = billed_by_day(metered)
    wh_compute: dict[tuple[str, str, date], float] = defaultdict(float)
    wh_services: dict[tuple[str, str, date], float] = defaultdict(float)
    for m in in_window:
        wh_compute[(m.account, m.warehouse, m.day)] += m.compute
        wh_services[(m.account, m.warehouse, m.day)] += m.cloud_services
    by_key: dict[str, dict[tuple[str, str, date], list[UserUsage]]] = {"a": defaultdict(list), "e": defaultdict(list)}
    if policy.use_attribution:
        for u in attributed:
            by_key["a"][(u.account, u.warehouse, u.day)].append(u)
    for u in executed:
        by_key["e"][(u.account, u.warehouse, u.day)].append(u)

    lines: list[CostLine] = []
    for key in sorted(wh_compute):
        account, warehouse, day = key
        _, services_day, billed_day = per_day[(account, day)]
        share = wh_services[key] / services_day * billed_day if services_day > 0 else 0.0
        lines += warehouse_day_lines(account, warehouse, day, wh_compute[key], share, by_key["a"].get(key, []),
                                     by_key["e"].get(key, []), queries_known.get(account, True),
                                     policy.pricing.price(account))
    lines.sort(key=lambda c: (c.day, c.account, c.warehouse, -c.credits, c.user))

    totals = []
    for account in sorted({m.account for m in metered} | {k[0] for k in wh_compute}):
        price = policy.pricing.price(account)
        current = [v for (a, d), v in per_day.items() if a == account and window.start <= day_start(d) < window.end]
        previous = [v for (a, d), v in per_day.items()
                    if a == account and window.previous_start <= day_start(d) < window.start]
        compute = sum(c for c, _, _ in current)
        billed = sum(b for _, _, b in current)
        totals.append(AccountTotal(account, compute, sum(s for _, s, _ in current), billed,
                                   (compute + billed) * price, sum(c + b for c, _, b in previous) * price))

    ranked = sorted(candidates, key=lambda q: (-q.credits_used()[0], q.query_id))
    top = []
    for q in ranked[: policy.top_queries]:
        credits, estimated = q.credits_used()
        if credits <= 0:
            continue
        top.append({"query_id": q.query_id, "account": q.account, "warehouse": q.warehouse, "user": q.user,
                    "credits": round(credits, 4), "usd": round(credits * policy.pricing.price(q.account), 2),
                    "estimated": estimated, "start": q.start.isoformat(),
                    "query": mask_sql_literals(q.query_text, policy.query_chars)})
    return CostReport(lines, totals, top)


def change_text(current: float, previous: float) -> str:
    if previous <= 0:
        return "new" if current > 0 else "flat"
    return f"{(current - previous) / previous * 100:+.0f}%"


def report_notes(report: CostReport, window: ReportWindow, policy: SnowflakeCostReportPolicy,
                 fallbacks: Mapping[str, str]) -> list[str]:
    """The markdown lines of the report's summary."""
    last = (window.end - timedelta(days=1)).date()
    estimated = sum(1 for c in report.lines if c.estimate)
    notes = [f"{window.start.date()} to {last}: ${report.usd:,.2f} for "
             f"{sum(t.credits_billed for t in report.totals):,.3f} credits billed"]
    for t in report.totals:
        notes.append(
            f"{t.account}: {t.compute_credits:,.3f} compute credits + {t.cloud_services_billed:,.3f} of "
            f"{t.cloud_services_used:,.3f} cloud services credits billed (only above 10 % of the day's "
            f"compute) at ${policy.pricing.price(t.account):,.2f}/credit = ${t.usd:,.2f}; previous period "
            f"${t.previous_usd:,.2f} ({change_text(t.usd, t.previous_usd)})")
    if estimated:
        notes.append(f"{estimated} user lines are estimates (QUERY_HISTORY execution time x warehouse "
                     "size, scaled to the metered credits): QUERY_ATTRIBUTION_HISTORY had no rows for them.")
    notes += [f"{account}: {why}" for account, why in sorted(fallbacks.items())]
    notes += [f"Top: {q['credits']:,.3f} credits (${q['usd']:,.2f}{', estimated' if q['estimated'] else ''}) "
              f"{q['account']} {q['warehouse']} {q['user']} [{q['query_id']}]: `{q['query']}`"
              for q in report.top_queries]
    notes.append(LATENCY_NOTE)
    return notes


def table_rows(lines: Sequence[CostLine]) -> list[dict]:
    """The report's table artifact: one row per account, warehouse, user and day."""
    return [{"day": c.day.isoformat(), "account": c.account, "warehouse": c.warehouse, "user": c.user,
             "method": c.method, "queries": c.queries, "credits": round(c.credits, 4), "usd": round(c.usd, 2)}
            for c in lines]


def metric_rows(lines: Sequence[CostLine], account: str) -> list[dict]:
    """Store history points of one account: subject = user, ts = day, value = $."""
    return [{"subject": c.user, "ts": day_start(c.day), "value": round(c.usd, 6),
             "labels": {"account": c.account, "warehouse": c.warehouse, "method": c.method,
                        "queries": c.queries, "credits": round(c.credits, 6)}}
            for c in lines if c.account == account]


# --- the expensive-query watch ---------------------------------------------------------------

KIND_EXPENSIVE_QUERY = "snowflake-expensive-query"


class SnowflakeQueryCostPolicy(SnowflakePolicy):
    """When a single finished Snowflake query is too expensive."""

    pricing: SnowflakePricing = Field(default_factory=SnowflakePricing, description="Price per credit.")
    threshold_usd: float = Field(default=5.0, gt=0, description="A query costing more is announced, once.")
    critical_usd: float = Field(default=50.0, gt=0, description="A query costing more is announced as critical.")
    lookback_hours: int = Field(
        default=9, ge=1, le=48,
        description="Queries started this long before the watermark are read again: attribution lags up to 8 h.",
    )
    query_chars: int = Field(default=500, ge=20, le=5000, description="Query text shown (literals masked).")


def watch_start(watermark: datetime | None, now: datetime, lookback_hours: int) -> datetime:
    """First start time to read: the watermark (or now) minus the lookback."""
    return min((watermark or now) - timedelta(hours=lookback_hours), now)


def window_note(scope: str, start: datetime, now: datetime, first: bool, lookback_hours: int) -> str:
    """What a run read in one account; a first run says how to read further back."""
    return text_window_note(scope, "queries started", start, now, (
        f"the last {lookback_hours} h; raise `policy.lookback_hours` for a longer backfill") if first else None)


def expensive_query_findings(queries: Iterable[CostlyQuery], policy: SnowflakeQueryCostPolicy) -> list[Finding]:
    """One finding per query whose credits x price exceed the threshold; attribution wins over
    an estimate of the same query id."""
    best: dict[tuple[str, str], CostlyQuery] = {}
    for q in queries:
        key = (q.account, q.query_id)
        if key not in best or (best[key].credits is None and q.credits is not None):
            best[key] = q
    found = []
    for (account, query_id), q in sorted(best.items()):
        credits, estimated = q.credits_used()
        usd = credits * policy.pricing.price(account)
        if usd <= policy.threshold_usd:
            continue
        text = mask_sql_literals(q.query_text, policy.query_chars)
        how = "estimated from execution time x warehouse size" if estimated else "attributed"
        found.append(Finding(
            kind=KIND_EXPENSIVE_QUERY, resource_id=query_id, scope=account,
            severity=Severity.CRITICAL if usd > policy.critical_usd else Severity.WARNING,
            reason=f"${usd:,.2f} query by {q.user} on {q.warehouse}: {credits:,.3f} credits ({how}) — {text}",
            numbers={"usd": round(usd, 2), "credits": round(credits, 6), "estimated": estimated, "user": q.user,
                     "warehouse": q.warehouse, "started": q.start.isoformat(), "query": text},
        ))
    return found
