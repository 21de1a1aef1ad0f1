"""Hear about an expensive Snowflake query soon after it ran, once.

Every 15 minutes: read the queries started since the last watermark (minus a lookback: query
history lags up to 45 min, attribution up to 8 h), price each (attributed credits, or an estimate
from execution time x warehouse size, marked) and announce each over the threshold exactly once:
the store remembers every query id it announced, so overlapping windows, runs and retries repeat
nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow

from blocks.store import OpsStore, load_store
from rules.snowflake import access_findings, check_accounts
from rules.snowflake_cost import (
    SnowflakeQueryCostPolicy,
    expensive_query_findings,
    watch_start,
    window_note,
)
from tasks.notify import on_flow_failure
from tasks.snowflake import coverage_of, snowflake_accounts
from tasks.snowflake_usage import read_expensive_queries
from tasks.tell import tell_events

JOB = "snowflake-query-cost-watch"


@flow(name=JOB, on_failure=[on_flow_failure])
def snowflake_query_cost_watch(
    accounts: list[str] = ["snowflake"],  # noqa: B006 — Prefect parameters are copied per run
    policy: SnowflakeQueryCostPolicy = SnowflakeQueryCostPolicy(),  # noqa: B008
    endpoints: dict[str, str] | None = None,
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> list:
    """Announce each finished query costing more than `policy.threshold_usd`, once.

    Args:
        accounts: Names of prefect-snowflake `SnowflakeConnector` blocks, one per account.
        policy: Threshold, price per credit, lookback.
        endpoints: Per block name, a URL for that account instead of its public host (PrivateLink; `fakesnow://host:port` in tests and the demo).
        store: Name of the `OpsStore` block (watermarks and announced queries).

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    targets = snowflake_accounts(check_accounts(accounts), endpoints)
    ops_store = load_store(store)
    now = now or datetime.now(timezone.utc)

    marks = {a.scope: _watermark(ops_store, a.scope) for a in targets}
    starts = {scope: watch_start(mark, now, policy.lookback_hours) for scope, mark in marks.items()}
    futures = [read_expensive_queries.submit(
        a, starts[a.scope], policy.threshold_usd / policy.pricing.price(a.scope), policy.query_chars,
        policy.login_timeout_seconds)
        for a in targets]
    reads = [f.result() for f in futures]

    queries = [q for r in reads for name in ("attributed", "executed") for q in r.data.get(name, [])]
    events = expensive_query_findings(queries, policy)
    problems = [f for r in reads for f in access_findings(r.account, r.problems.values())]
    # One of the two views is enough: the other's problem is still a finding, but hides nothing.
    coverage = coverage_of(reads, {"attributed": set(), "executed": set()})
    for r in reads:
        if r.connected and not (r.ok("attributed") or r.ok("executed")):
            coverage.fail(r.account, "neither QUERY_ATTRIBUTION_HISTORY nor QUERY_HISTORY could be read")
    announced = tell_events(JOB, events + problems, ops_store, now, coverage, notes=[
        f"{len(queries)} finished queries over ${policy.threshold_usd:,.2f} read; query history lags up to "
        "45 min and attribution up to 8 h, so a query is announced when it shows, priced by attribution "
        "when it has one, else estimated (marked).",
        *(window_note(scope, start, now, marks[scope] is None, policy.lookback_hours)
          for scope, start in starts.items())])
    for r in reads:  # only after the announcements are saved: a crash re-reads the window
        if r.ok("attributed") or r.ok("executed"):
            ops_store.set_watermark(JOB, r.account, now.isoformat(), now)
    return announced.opened


def _watermark(ops_store, scope: str) -> datetime | None:
    value = ops_store.get_watermark(JOB, scope)
    return datetime.fromisoformat(value) if value else None
