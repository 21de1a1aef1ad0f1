"""BigQuery spend: what each job cost, who spent what per day, and which queries were too dear.

Pure judgement over job records read from `region-XX`.INFORMATION_SCHEMA.JOBS_BY_PROJECT (or a
table with the same columns). Billing facts applied here:
- on-demand queries bill `total_bytes_billed` at a price per TiB (list $6.25), and the first
  TiB of each calendar month is free (per billing account: all configured projects share it);
- projects on editions/reservations pay for slots instead: `total_slot_ms` at a $/slot-hour;
- a SCRIPT parent job reports the sum of its children, which are listed too: parents are
  excluded so scripts are not counted twice;
- cached queries bill nothing; dry runs create no job record, so they never appear.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from pydantic import BaseModel, ConfigDict, Field

from rules.config import ConfigError
from rules.findings import Finding, Severity
from rules.text import mask_sql_literals
from rules.text import window_note as text_window_note

TIB = 1024**4
MS_PER_HOUR = 3_600_000
BUDGET_SCOPE = "bigquery"  # per-user budgets span every project read
DEFAULT_JOBS_TABLE = "{project}.region-{region}.INFORMATION_SCHEMA.JOBS_BY_PROJECT"
KIND_EXPENSIVE_QUERY = "bigquery-expensive-query"
KIND_USER_BUDGET = "bigquery-user-daily-budget"

_PROJECT = re.compile(r"^[a-z][a-z0-9:.-]{3,61}[a-z0-9]$")  # domain-scoped ids contain ':' and '.'
_REGION = re.compile(r"^[a-z]+(-[a-z]+[0-9]+)?$")  # us, eu, us-central1, europe-west2
_TABLE_PART = re.compile(r"^[A-Za-z0-9_:.-]+$")


# --- configuration -------------------------------------------------------------------


class BigQueryPricing(BaseModel):
    """What BigQuery charges; defaults are the public list prices."""

    model_config = ConfigDict(extra="forbid")

    price_per_tib_usd: float = Field(
        default=6.25, ge=0, description="On-demand price per TiB billed, in USD."
    )
    free_tib_per_month: float = Field(
        default=1.0, ge=0, description="On-demand TiB free each calendar month (0 to ignore)."
    )
    slot_hour_usd: float = Field(
        default=0.06, ge=0,
        description="Price per slot-hour for projects on editions/reservations (Enterprise PAYG).",
    )
    slot_priced_projects: list[str] = Field(
        default_factory=list,
        description="Projects on editions/reservations: their cost comes from slot-ms, not bytes.",
    )


class CostReportPolicy(BaseModel):
    """What the daily cost report covers."""

    model_config = ConfigDict(extra="forbid")

    pricing: BigQueryPricing = Field(default_factory=BigQueryPricing, description="Prices.")
    days: int = Field(default=1, ge=1, le=31, description="Days in the reported period.")
    top_queries: int = Field(default=10, ge=0, le=100, description="Most expensive queries listed.")
    query_chars: int = Field(
        default=300, ge=20, le=5000, description="Query text shown per job (literals masked)."
    )


class QueryWatchPolicy(BaseModel):
    """When a query, or a user's day, is too expensive."""

    model_config = ConfigDict(extra="forbid")

    pricing: BigQueryPricing = Field(default_factory=BigQueryPricing, description="Prices.")
    threshold_usd: float = Field(default=5.0, gt=0, description="A job costing more is announced.")
    critical_usd: float = Field(
        default=50.0, gt=0, description="A job costing more is announced as critical."
    )
    user_daily_budget_usd: float | None = Field(
        default=None, gt=0,
        description="Per-user spend per UTC day that opens one finding per user and day (off if empty).",
    )
    lookback_hours: int = Field(
        default=6, ge=1, le=48,
        description="Jobs created this long before the watermark are read again: a query can run "
                    "for 6 h and only shows its bytes when done.",
    )
    first_run_hours: int = Field(
        default=24, ge=1, le=24 * 30,
        description="A project/region read for the first time (no watermark yet) is read this far "
                    "back: the backfill window (at most 30 days).",
    )
    query_chars: int = Field(
        default=500, ge=20, le=5000, description="Query text shown per job (literals masked)."
    )


def check_scopes(projects: Sequence[str], regions: Sequence[str], jobs_table: str) -> None:
    """Reject bad project ids, regions or table templates before any query runs."""
    if not projects:
        raise ConfigError("`projects` is empty: list the BigQuery project ids to watch.")
    if not regions:
        raise ConfigError("`regions` is empty: list the job regions, e.g. [\"us\"] or [\"eu\"].")
    for project in projects:
        if not _PROJECT.match(project):
            raise ConfigError(
                f"`projects`: {project!r} is not a BigQuery project id (lower case letters, "
                "digits and dashes, 6-63 characters): use the id, not the display name."
            )
    for region in regions:
        if not _REGION.match(region):
            raise ConfigError(
                f"`regions`: {region!r} is not a BigQuery region: write it as in `region-us`, "
                "e.g. `us`, `eu`, `us-central1`, `europe-west2` (lower case, no `region-`)."
            )
    jobs_table_path(jobs_table, projects[0], regions[0])


def jobs_table_path(template: str, project: str, region: str) -> str:
    """The jobs table for a project and region, backtick-quoted: safe to put in SQL."""
    try:
        path = template.format(project=project, region=region)
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"`jobs_table` {template!r}: use only the placeholders {{project}} and {{region}}, "
            f"e.g. {DEFAULT_JOBS_TABLE!r}."
        ) from None
    parts = path.split(".")
    if len(parts) < 3 or not all(_TABLE_PART.match(p) for p in parts):
        raise ConfigError(
            f"`jobs_table` {template!r} gives {path!r}, not a `project.dataset.table` path: "
            f"use e.g. {DEFAULT_JOBS_TABLE!r}."
        )
    return f"`{path}`"


# --- records and prices ----------------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    """One job from the JOBS view (only the columns the judgement needs)."""

    project_id: str
    region: str
    user_email: str
    job_id: str
    creation_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    statement_type: str = ""
    cache_hit: bool = False
    total_bytes_billed: int = 0
    total_slot_ms: int = 0
    parent_job_id: str = ""
    destination_table: str = ""
    query: str = ""

    @property
    def duration_s(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    @property
    def day(self) -> date:
        return self.creation_time.astimezone(timezone.utc).date()


def billable(jobs: Iterable[JobRecord]) -> list[JobRecord]:
    """Jobs that bill on their own: SCRIPT parents go (their children carry the bytes)."""
    return [j for j in jobs if j.statement_type.upper() != "SCRIPT"]


def list_cost_usd(job: JobRecord, pricing: BigQueryPricing) -> float:
    """What a job costs at list price, before the monthly free tier."""
    if job.cache_hit:
        return 0.0
    if job.project_id in pricing.slot_priced_projects:
        return job.total_slot_ms / MS_PER_HOUR * pricing.slot_hour_usd
    return job.total_bytes_billed / TIB * pricing.price_per_tib_usd


def net_costs_usd(jobs: Sequence[JobRecord], pricing: BigQueryPricing) -> dict[str, float]:
    """Cost per job id after the free TiB of each month, consumed in creation order.

    `jobs` must include every on-demand job of the month before the first one reported,
    or the free tier is counted again.
    """
    used: dict[tuple[int, int], int] = defaultdict(int)
    free = pricing.free_tib_per_month * TIB
    result: dict[str, float] = {}
    for job in sorted(billable(jobs), key=lambda j: (j.creation_time, j.job_id)):
        cost = list_cost_usd(job, pricing)
        if job.project_id not in pricing.slot_priced_projects and not job.cache_hit:
            month = (job.day.year, job.day.month)
            before = used[month]
            used[month] += job.total_bytes_billed
            charged = max(0.0, used[month] - free) - max(0.0, before - free)
            cost = charged / TIB * pricing.price_per_tib_usd
        result[job.job_id] = cost
    return result


def console_url(project: str, region: str, job_id: str) -> str:
    location = region.upper() if region in ("us", "eu") else region
    return (
        f"https://console.cloud.google.com/bigquery?project={project}"
        f"&j=bq:{location}:{job_id}&page=queryresults"
    )


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


# --- the cost report -----------------------------------------------------------------


@dataclass(frozen=True)
class ReportWindow:
    """The reported days [start, end), the period before it, and what must be read."""

    start: datetime
    end: datetime
    previous_start: datetime
    read_start: datetime  # earliest job needed: previous period or month start (free tier)


def report_window(last_day: date, days: int) -> ReportWindow:
    end = day_start(last_day + timedelta(days=1))
    start = end - timedelta(days=days)
    previous_start = start - timedelta(days=days)
    month_start = start.replace(day=1)
    return ReportWindow(start, end, previous_start, min(previous_start, month_start))


@dataclass(frozen=True)
class CostLine:
    """Spend of one user in one project on one day."""

    project: str
    region: str
    user: str
    day: date
    jobs: int
    bytes_billed: int
    slot_ms: int
    list_usd: float
    cost_usd: float  # after the monthly free tier


@dataclass
class CostReport:
    lines: list[CostLine]
    top_queries: list[dict]
    trend: list[dict]  # per project: current, previous, change
    total_usd: float
    total_list_usd: float
    previous_list_usd: float


def cost_report(
    jobs: Sequence[JobRecord], policy: CostReportPolicy, window: ReportWindow
) -> CostReport:
    """Per project/user/day spend in the window, the top queries, and the trend."""
    pricing = policy.pricing
    net = net_costs_usd(jobs, pricing)
    counted = billable(jobs)
    current = [j for j in counted if window.start <= j.creation_time < window.end]
    previous = [j for j in counted if window.previous_start <= j.creation_time < window.start]

    groups: dict[tuple[str, str, str, date], list[JobRecord]] = defaultdict(list)
    for job in current:
        groups[(job.project_id, job.region, job.user_email, job.day)].append(job)
    lines = [
        CostLine(
            project=project, region=region, user=user, day=day, jobs=len(group),
            bytes_billed=sum(j.total_bytes_billed for j in group),
            slot_ms=sum(j.total_slot_ms for j in group),
            list_usd=sum(list_cost_usd(j, pricing) for j in group),
            cost_usd=sum(net[j.job_id] for j in group),
        )
        for (project, region, user, day), group in groups.items()
    ]
    lines.sort(key=lambda c: (c.day, -c.cost_usd, c.project, c.user))

    ranked = sorted(current, key=lambda j: (-list_cost_usd(j, pricing), j.job_id))
    top = [
        {
            "job_id": j.job_id, "project": j.project_id, "user": j.user_email,
            "cost_usd": round(list_cost_usd(j, pricing), 2), "bytes_billed": j.total_bytes_billed,
            "query": mask_sql_literals(j.query, policy.query_chars),
            "url": console_url(j.project_id, j.region, j.job_id),
        }
        for j in ranked[: policy.top_queries]
        if list_cost_usd(j, pricing) > 0
    ]

    by_project: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for job in current:
        by_project[job.project_id][0] += list_cost_usd(job, pricing)
    for job in previous:
        by_project[job.project_id][1] += list_cost_usd(job, pricing)
    trend = [
        {"project": p, "current_usd": round(cur, 2), "previous_usd": round(prev, 2),
         "change": change_text(cur, prev)}
        for p, (cur, prev) in sorted(by_project.items())
    ]
    return CostReport(
        lines=lines,
        top_queries=top,
        trend=trend,
        total_usd=sum(c.cost_usd for c in lines),
        total_list_usd=sum(c.list_usd for c in lines),
        previous_list_usd=sum(list_cost_usd(j, pricing) for j in previous),
    )


def change_text(current: float, previous: float) -> str:
    if previous <= 0:
        return "new" if current > 0 else "flat"
    pct = (current - previous) / previous * 100
    return f"{pct:+.0f}%"


# --- the expensive-query watch -------------------------------------------------------


def watch_start(watermark: datetime | None, now: datetime, policy: QueryWatchPolicy) -> datetime:
    """First creation time to read: the watermark minus the lookback (jobs finish late), or on a
    first run the backfill window, and the start of today when a daily budget needs the whole day."""
    start = (watermark - timedelta(hours=policy.lookback_hours) if watermark
             else now - timedelta(hours=policy.first_run_hours))
    if policy.user_daily_budget_usd is not None:
        start = min(start, day_start(now.astimezone(timezone.utc).date()))
    return min(start, now)


def window_note(scope: str, start: datetime, now: datetime, first: bool, policy: QueryWatchPolicy) -> str:
    """What a run read in one project/region; a first run says how to read further back."""
    return text_window_note(scope, "jobs created", start, now, (
        f"a {policy.first_run_hours} h backfill; set `policy.first_run_hours` up to 720 to read further back") if first else None)


def expensive_query_findings(jobs: Iterable[JobRecord], policy: QueryWatchPolicy) -> list[Finding]:
    """One finding per job costing more than the threshold (list price, SCRIPT parents excluded)."""
    found = []
    for job in billable(jobs):
        cost = list_cost_usd(job, policy.pricing)
        if cost <= policy.threshold_usd:
            continue
        duration = job.duration_s
        found.append(
            Finding(
                kind=KIND_EXPENSIVE_QUERY,
                resource_id=job.job_id,
                scope=job.project_id,
                severity=Severity.CRITICAL if cost > policy.critical_usd else Severity.WARNING,
                reason=(
                    f"${cost:,.2f} query by {job.user_email}: {job.total_bytes_billed / TIB:.2f} TiB "
                    f"billed, {job.statement_type or 'QUERY'}"
                    + (f" into {job.destination_table}" if job.destination_table else "")
                    + (f", ran {duration:.0f} s" if duration is not None else "")
                    + f" — {mask_sql_literals(job.query, policy.query_chars)}"
                ),
                numbers={
                    "cost_usd": round(cost, 2),
                    "bytes_billed": job.total_bytes_billed,
                    "slot_ms": job.total_slot_ms,
                    "duration_s": duration,
                    "user": job.user_email,
                    "statement_type": job.statement_type,
                    "destination_table": job.destination_table,
                    "region": job.region,
                    "created": job.creation_time.isoformat(),
                    "query": mask_sql_literals(job.query, policy.query_chars),
                },
                url=console_url(job.project_id, job.region, job.job_id),
            )
        )
    return found


def user_budget_findings(
    jobs: Iterable[JobRecord], policy: QueryWatchPolicy, now: datetime
) -> list[Finding]:
    """One finding per user whose spend today (UTC, all projects, list price) exceeds the budget."""
    budget = policy.user_daily_budget_usd
    if budget is None:
        return []
    today = now.astimezone(timezone.utc).date()
    spend: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for job in billable(jobs):
        if job.day == today:
            spend[job.user_email] += list_cost_usd(job, policy.pricing)
            count[job.user_email] += 1
    return [
        Finding(
            kind=KIND_USER_BUDGET,
            resource_id=f"{user}@{today.isoformat()}",
            scope=BUDGET_SCOPE,
            severity=Severity.WARNING,
            reason=f"{user} spent ${total:,.2f} on {today.isoformat()} (UTC) in {count[user]} jobs, "
                   f"over the daily budget of ${budget:,.2f}",
            numbers={"user": user, "day": today.isoformat(), "cost_usd": round(total, 2),
                     "budget_usd": budget, "jobs": count[user]},
        )
        for user, total in sorted(spend.items())
        if total > budget
    ]


def report_notes(report: CostReport, window: ReportWindow, monitoring_bytes: int) -> list[str]:
    """The markdown lines of the report's summary."""
    last = (window.end - timedelta(days=1)).date()
    return [
        f"{window.start.date()} to {last}: ${report.total_usd:,.2f} after the free tier "
        f"(${report.total_list_usd:,.2f} at list price; previous period "
        f"${report.previous_list_usd:,.2f}, {change_text(report.total_list_usd, report.previous_list_usd)})",
        *[f"Trend {t['project']}: ${t['current_usd']:,.2f} vs ${t['previous_usd']:,.2f} ({t['change']})"
          for t in report.trend],
        *[f"Top: ${q['cost_usd']:,.2f} {q['project']} {q['user']} [{q['job_id']}]({q['url']}): "
          f"`{q['query']}`" for q in report.top_queries],
        f"This report's own queries billed {monitoring_bytes:,} bytes.",
    ]


def table_rows(lines: Sequence[CostLine]) -> list[dict]:
    """The report's table artifact: one row per project, user and day."""
    return [
        {"day": c.day.isoformat(), "project": c.project, "region": c.region, "user": c.user,
         "jobs": c.jobs, "tib_billed": round(c.bytes_billed / TIB, 4),
         "list_usd": round(c.list_usd, 2), "cost_usd": round(c.cost_usd, 2)}
        for c in lines
    ]


def metric_rows(lines: Sequence[CostLine], project: str, region: str) -> list[dict]:
    """Store history points of one project/region: subject = user, ts = day, value = cost."""
    return [
        {
            "subject": c.user,
            "ts": day_start(c.day),
            "value": round(c.cost_usd, 6),
            "labels": {"project": c.project, "region": c.region, "jobs": c.jobs,
                       "bytes_billed": c.bytes_billed, "slot_ms": c.slot_ms,
                       "list_usd": round(c.list_usd, 6)},
        }
        for c in lines
        if (c.project, c.region) == (project, region)
    ]
