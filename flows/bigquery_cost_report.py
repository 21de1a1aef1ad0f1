"""Who spent what in BigQuery: cost per project, user and day, top queries, trend.

Reads `region-XX`.INFORMATION_SCHEMA.JOBS_BY_PROJECT for each project and region (one cheap
query each), prices the jobs (rules/bigquery_cost.py) and keeps the daily history in the store.
Re-running a day replaces that day's history instead of doubling it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from prefect import flow
from prefect_gcp import GcpCredentials

from blocks.store import OpsStore, load_store
from rules.bigquery_cost import (
    DEFAULT_JOBS_TABLE,
    CostReportPolicy,
    check_scopes,
    cost_report,
    metric_rows,
    report_notes,
    report_window,
    table_rows,
)
from tasks.bigquery import bigquery_access, coverage_of, read_all
from tasks.notify import on_flow_failure
from tasks.tell import tell

JOB = "bigquery-cost-report"
METRIC = "bigquery_cost_usd"  # one series per project/region, subject = user, ts = day


@flow(name=JOB, on_failure=[on_flow_failure])
def bigquery_cost_report(
    projects: list[str],
    regions: list[str] = ["us"],  # noqa: B006 — Prefect parameters are copied per run
    policy: CostReportPolicy = CostReportPolicy(),  # noqa: B008
    gcp_credentials: GcpCredentials | str = "gcp",
    emulator_endpoint: str | None = None,
    jobs_table: str = DEFAULT_JOBS_TABLE,
    store: OpsStore | str = "ops-store",
    last_day: date | None = None,
    now: datetime | None = None,
) -> dict:
    """Report BigQuery spend for the `policy.days` days ending with `last_day` (default: yesterday, UTC).

    Args:
        projects: BigQuery project ids whose job history is read.
        regions: Job regions, as in `region-us`: `us`, `eu`, `us-central1`, ...
        policy: Prices, period length, how many top queries.
        gcp_credentials: Name of a prefect-gcp `GcpCredentials` block.
        emulator_endpoint: A BigQuery emulator URL (tests, demo); no credentials are used then.
        jobs_table: The job history table, with `{project}` and `{region}` placeholders.
        store: Name of the `OpsStore` block.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    check_scopes(projects, regions, jobs_table)
    ops_store = load_store(store)
    access = bigquery_access(gcp_credentials, emulator_endpoint)
    now = now or datetime.now(timezone.utc)
    window = report_window(last_day or (now.date() - timedelta(days=1)), policy.days)

    reads = read_all(access, projects, regions, jobs_table, window.read_start, window.end,
                     policy.query_chars)
    report = cost_report([j for r in reads for j in r.jobs], policy, window)

    for r in reads:
        if r.error is None:
            ops_store.replace_metrics(JOB, f"{METRIC}:{r.project}:{r.region}", window.start,
                                      window.end, metric_rows(report.lines, r.project, r.region))
    coverage = coverage_of(reads)
    scanned = sum(r.bytes_billed for r in reads)
    tell(JOB, [], ops_store, now, coverage, notes=report_notes(report, window, scanned),
         table=table_rows(report.lines))
    return {"lines": report.lines, "top_queries": report.top_queries, "trend": report.trend,
            "errors": coverage.errors, "monitoring_bytes_billed": scanned}

