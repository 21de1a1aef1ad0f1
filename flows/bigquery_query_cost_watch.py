"""Hear about an expensive BigQuery query minutes after it ran, once.

Every few minutes: read the jobs finished since the last watermark (minus a lookback, since
a long query only shows its bytes when it is done; a first run reads `first_run_hours` back
and its summary says so), announce each job over the threshold
exactly once (the store remembers every job id it announced, so overlapping windows, runs
and retries repeat nothing), and optionally each user crossing a daily budget once per day.
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow
from prefect_gcp import GcpCredentials

from blocks.store import OpsStore, load_store
from rules.bigquery_cost import (
    DEFAULT_JOBS_TABLE,
    QueryWatchPolicy,
    check_scopes,
    expensive_query_findings,
    user_budget_findings,
    watch_start,
    window_note,
)
from tasks.bigquery import bigquery_access, coverage_of, read_all
from tasks.notify import on_flow_failure
from tasks.tell import tell_events

JOB = "bigquery-query-cost-watch"


@flow(name=JOB, on_failure=[on_flow_failure])
def bigquery_query_cost_watch(
    projects: list[str],
    regions: list[str] = ["us"],  # noqa: B006 — Prefect parameters are copied per run
    policy: QueryWatchPolicy = QueryWatchPolicy(),  # noqa: B008
    gcp_credentials: GcpCredentials | str = "gcp",
    emulator_endpoint: str | None = None,
    jobs_table: str = DEFAULT_JOBS_TABLE,
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> list:
    """Announce each query job costing more than `policy.threshold_usd`, once.

    Args:
        projects: BigQuery project ids whose job history is read.
        regions: Job regions, as in `region-us`: `us`, `eu`, `us-central1`, ...
        policy: Threshold, optional per-user daily budget, prices, lookback.
        gcp_credentials: Name of a prefect-gcp `GcpCredentials` block.
        emulator_endpoint: A BigQuery emulator URL (tests, demo); no credentials are used then.
        jobs_table: The job history table, with `{project}` and `{region}` placeholders.
        store: Name of the `OpsStore` block (watermarks and announced jobs).

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    check_scopes(projects, regions, jobs_table)
    ops_store = load_store(store)
    access = bigquery_access(gcp_credentials, emulator_endpoint)
    now = now or datetime.now(timezone.utc)
    watermarks = {f"{p}/{r}": _watermark(ops_store, f"{p}/{r}") for p in projects for r in regions}
    starts = {scope: watch_start(mark, now, policy) for scope, mark in watermarks.items()}

    reads = read_all(access, projects, regions, jobs_table, starts, now, policy.query_chars)
    jobs = [j for r in reads for j in r.jobs]
    findings = expensive_query_findings(jobs, policy) + user_budget_findings(jobs, policy, now)

    announced = tell_events(JOB, findings, ops_store, now, coverage_of(reads), notes=[
        f"{len(jobs)} finished query jobs read; our queries billed "
        f"{sum(r.bytes_billed for r in reads):,} bytes.",
        *(window_note(scope, start, now, watermarks[scope] is None, policy) for scope, start in starts.items()),
    ])
    for r in reads:  # only after the announcements are saved: a crash re-reads the window
        if r.error is None:
            ops_store.set_watermark(JOB, r.scope, now.isoformat(), now)
    return announced.opened


def _watermark(ops_store, scope: str) -> datetime | None:
    value = ops_store.get_watermark(JOB, scope)
    return datetime.fromisoformat(value) if value else None
