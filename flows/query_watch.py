"""`query-watch`: long-running queries and lock blockers on Redshift or PostgreSQL, every few minutes.

A query or blocker is announced once when it crosses its threshold, reminded after the
repeat interval and resolved when it ends (the `tell` step). Cancelling or terminating is
off unless `apply=True`, and then only past a hard limit: for the policy's allow-listed users
(a standing approval) or what a person approves through the approval path; never our own session.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow

from blocks.loading import load_block
from blocks.store import OpsStore, load_store
from blocks.warehouse import WarehouseConnection
from rules.findings import Coverage
from rules.query_watch import (
    QueryWatchPolicy,
    access_findings,
    judge_lock_waits,
    judge_long_queries,
    not_checked,
    plan_actions,
)
from tasks.approval import ApprovalExpired, Offer, ask_approval, cancelled, outcome_message
from tasks.notify import on_flow_failure
from tasks.redshift import act_on_backends, collect_query_watch
from tasks.tell import tell

JOB = "query-watch"
DEFAULT_POLICY = QueryWatchPolicy()


@flow(name=JOB, on_failure=[on_flow_failure])
def query_watch(
    policy: QueryWatchPolicy = DEFAULT_POLICY,
    warehouse: WarehouseConnection | str = "warehouse",
    store: OpsStore | str = "ops-store",
    apply: bool = False,
    now: datetime | None = None,
):
    """Watch one warehouse's running queries and locks.

    Args:
        policy: thresholds, hard limits and the allow-list of users that may be acted on.
        warehouse: the `WarehouseConnection` block (pick a saved one, or give its name).
        store: the `OpsStore` block (pick a saved one, or give its name).
        apply: really cancel/terminate (allow-listed users, and what a person approves when
            the run asks); otherwise the planned actions are only recorded.
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    ops_store = load_store(store)
    conn = load_block(WarehouseConnection, warehouse, "warehouse")
    now = now or datetime.now(timezone.utc)
    scope = conn.scope

    snap = collect_query_watch(conn, policy.min_query_seconds)

    findings = [*judge_long_queries(snap.queries, policy, scope, snap.waits),
                *judge_lock_waits(snap.waits, policy, scope)]
    findings += access_findings(scope, [(p.problem, p.message) for p in snap.problems.values()])
    coverage = Coverage({scope})
    for name, problem in snap.problems.items():
        # A failed check hides its kinds, a failed connection (or visibility) every check's;
        # the access finding above is what the run saw, and resolves once access works again.
        coverage.fail(scope, problem.message, not_checked({name}))

    plans = plan_actions(snap.queries, snap.waits, policy, snap.own_pid)
    planned = [] if apply else [f"would {p.action} pid {p.pid}: {p.reason}"
                                f"{' (allow-listed: no approval needed)' if p.allow_listed else ''}"
                                for p in plans]
    tell(JOB, findings, ops_store, now, coverage, repeat_interval=timedelta(hours=policy.repeat_interval_hours),
         planned=planned, policy=policy)
    if apply:
        offers = [Offer(p.resource_id, scope, p.action, 0.0, p.reason, payload=p)
                  for p in plans if not p.allow_listed]
        try:
            chosen = ask_approval(JOB, offers, policy.approval_timeout_seconds)
        except ApprovalExpired as exc:
            return cancelled(str(exc))
        plans = [p for p in plans if p.allow_listed] + [o.payload for o in chosen]
    if plans:  # a dry run records what it would do
        rows = act_on_backends(conn, plans, apply, ops_store, JOB, scope, now)
        if apply:
            outcome_message(JOB, rows)
    return findings
