"""`snowflake-query-watch`: long-running and blocked queries in Snowflake, every few minutes.

A query running past the limit, or a blocker others wait for (who blocks whom), is announced
once, reminded after the repeat interval and resolved when it ends (the `tell` step). Cancelling
(SYSTEM$CANCEL_QUERY) is off unless `apply=True`, and then only past a hard limit and only what a
person approves through the approval path; our own queries never.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow

from blocks.store import OpsStore, load_store
from rules.snowflake import access_findings, check_accounts
from rules.snowflake_query_watch import (
    KIND_BLOCKER,
    SnowflakeQueryWatchPolicy,
    judge_blocked,
    judge_long_queries,
    plan_cancels,
)
from tasks.approval import ApprovalExpired, Offer, ask_approval, cancelled, outcome_message
from tasks.notify import on_flow_failure
from tasks.snowflake import QUERY_TAG, coverage_of, snowflake_accounts
from tasks.snowflake_activity import cancel_queries, read_activity
from tasks.tell import tell

JOB = "snowflake-query-watch"
# Without LOCK_WAIT_HISTORY the blockers are unknown (blocked queries are still reported).
PARTIAL_READS = {"lock_waits": {KIND_BLOCKER}}


@flow(name=JOB, on_failure=[on_flow_failure])
def snowflake_query_watch(
    accounts: list[str] = ["snowflake"],  # noqa: B006 — Prefect parameters are copied per run
    policy: SnowflakeQueryWatchPolicy = SnowflakeQueryWatchPolicy(),  # noqa: B008
    endpoints: dict[str, str] | None = None,
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
) -> list:
    """Watch the running and blocked queries of each account.

    Args:
        accounts: Names of prefect-snowflake `SnowflakeConnector` blocks, one per account.
        policy: Thresholds, and the hard limits past which cancelling is offered.
        endpoints: Per block name, a URL for that account instead of its public host (PrivateLink; `fakesnow://host:port` in tests and the demo).
        store: Name of the `OpsStore` block.
        apply: Offer the queries past a hard limit for approval and cancel what a person picks; otherwise only record the plan.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    targets = {a.scope: a for a in snowflake_accounts(check_accounts(accounts), endpoints)}
    ops_store = load_store(store)
    now = now or datetime.now(timezone.utc)
    lock_start = now - timedelta(hours=policy.lock_lookback_hours)

    futures = [read_activity.submit(a, lock_start, policy.login_timeout_seconds) for a in targets.values()]
    reads = [f.result() for f in futures]

    findings = []
    for r in reads:
        live, waits = r.data.get("live", []), r.data.get("lock_waits", [])
        findings += judge_long_queries(live, policy, QUERY_TAG)
        findings += judge_blocked(live, waits, policy, waits_known=r.ok("lock_waits"))
        findings += access_findings(r.account, r.problems.values())
    tell(JOB, findings, ops_store, now, coverage_of(reads, PARTIAL_READS),
         repeat_interval=timedelta(hours=policy.repeat_interval_hours))

    plans = [p for r in reads
             for p in plan_cancels(r.data.get("live", []), r.data.get("lock_waits", []), policy, QUERY_TAG)]
    if apply:
        offers = [Offer(p.query_id, p.account, "cancel-query", 0.0, f"{p.user}: {p.reason}", payload=p)
                  for p in plans]
        try:
            plans = [o.payload for o in ask_approval(JOB, offers, policy.approval_timeout_seconds)]
        except ApprovalExpired as exc:
            return cancelled(str(exc))
    rows = []
    for scope in sorted({p.account for p in plans}):  # a dry run records what it would do
        rows += cancel_queries(targets[scope], [p for p in plans if p.account == scope], apply, ops_store,
                               JOB, now, policy.login_timeout_seconds)
    if apply:
        outcome_message(JOB, rows)
    return findings

