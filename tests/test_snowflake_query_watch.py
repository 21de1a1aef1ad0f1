"""Snowflake query watch against a fakesnow server, with the real connector and prefect-snowflake blocks.

fakesnow has neither the INFORMATION_SCHEMA.QUERY_HISTORY table function, nor ACCOUNT_USAGE, nor
SYSTEM$CANCEL_QUERY: the live query history is read from a stand-in table with the function's
columns, LOCK_WAIT_HISTORY is a table with the view's documented columns, and a cancel is recorded
in a stand-in table (tasks/snowflake.py, deployments/local_snowflake.py). Everything else is real:
the flow runs on the Prefect server, the approval pauses it and a person's answer resumes it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from deployments.local_snowflake import (
    create_account_usage,
    fakesnow_server,
    insert_rows,
    save_connector,
    seed_connection,
)
from flows.snowflake_query_watch import JOB, snowflake_query_watch
from rules.snowflake_query_watch import (
    KIND_BLOCKED,
    KIND_BLOCKER,
    KIND_LONG,
    LiveQuery,
    LockWait,
    SnowflakeQueryWatchPolicy,
    judge_blocked,
    plan_cancels,
)
from tasks.snowflake import QUERY_TAG
from tests.approvals import run_and_answer

PROD = "acme-prod"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
MIN = 60_000
POLICY = SnowflakeQueryWatchPolicy(login_timeout_seconds=5)


def live(query_id: str, user: str, status: str, minutes: float, blocked_minutes: float = 0, *,
         tag: str = "", text: str = "SELECT 1") -> dict:
    return {"QUERY_ID": query_id, "QUERY_TEXT": text, "SESSION_ID": 1, "USER_NAME": user, "ROLE_NAME": "ANALYST",
            "WAREHOUSE_NAME": "ETL_WH", "WAREHOUSE_SIZE": "Medium", "EXECUTION_STATUS": status,
            "START_TIME": NOW - timedelta(minutes=minutes), "TOTAL_ELAPSED_TIME": int(minutes * MIN),
            "TRANSACTION_BLOCKED_TIME": int(blocked_minutes * MIN), "QUERY_TAG": tag}


def lock_wait(query_id: str, minutes_ago: float, blocker: str | None, acquired: bool = False,
              table: str = "ORDERS") -> dict:
    requested = NOW - timedelta(minutes=minutes_ago)
    blockers = [{"is_snowflake": False, "query_id": blocker, "transaction_id": 9001}] if blocker else []
    return {"OBJECT_ID": 1, "LOCK_TYPE": "PARTITION", "OBJECT_NAME": table, "SCHEMA_ID": 1, "SCHEMA_NAME": "PUBLIC",
            "DATABASE_ID": 1, "DATABASE_NAME": "ANALYTICS", "QUERY_ID": query_id, "TRANSACTION_ID": 7,
            "REQUESTED_AT": requested, "ACQUIRED_AT": requested + timedelta(minutes=1) if acquired else None,
            "BLOCKER_QUERIES": json.dumps(blockers)}


LIVE = [
    live("L1", "ALICE", "RUNNING", 90, text="DELETE FROM raw.events WHERE day < '2025-01-01'"),  # long
    live("L2", "BOB", "RUNNING", 10, text="UPDATE analytics.public.orders SET status = 'x'"),  # the blocker
    live("B1", "CAROL", "BLOCKED", 8, 8),  # waits on L2
    live("B2", "DAVE", "BLOCKED", 6, 6),  # waits on L2
    live("B3", "ERIN", "BLOCKED", 7, 7),  # blocker not in LOCK_WAIT_HISTORY yet
    live("L3", "HANK", "RUNNING", 3),
    live("G1", "GINA", "BLOCKED", 2, 2),  # trap: blocked by L3, but not for long
    live("OWN", "DATAPLATFORM_OPS", "RUNNING", 120, tag=QUERY_TAG),  # trap: our own query
    live("Q5", "FRANK", "QUEUED", 30),  # trap: queued, under the limit
]
LOCK_WAITS = [
    lock_wait("B1", 8, "L2"), lock_wait("B2", 6, "L2"), lock_wait("G1", 2, "L3"),
    lock_wait("OLD", 300, "X9", acquired=True),  # trap: a wait long over, its query gone
]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with fakesnow_server() as url:
        yield url


def seed(endpoint: str, live_rows: list[dict], waits: list[dict] | None) -> None:
    """Fresh tables for a test: the live queries, and LOCK_WAIT_HISTORY (None: the role cannot see it)."""
    with seed_connection(endpoint) as conn:
        create_account_usage(conn, views=[] if waits is None else ["LOCK_WAIT_HISTORY"])
        if waits is None:
            conn.cursor().execute("DROP TABLE IF EXISTS SNOWFLAKE.ACCOUNT_USAGE.LOCK_WAIT_HISTORY")
        insert_rows(conn, "STAND_IN.PUBLIC.QUERY_HISTORY_LIVE", live_rows)
        insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.LOCK_WAIT_HISTORY", waits or [])


def cancelled_ids(endpoint: str) -> list[str]:
    with seed_connection(endpoint) as conn:
        return [r[0] for r in conn.cursor().execute("SELECT query_id FROM STAND_IN.PUBLIC.CANCELLED_QUERIES").fetchall()]


def watch(endpoint: str, store, **kwargs):
    name = save_connector(f"sf-{uuid.uuid4().hex[:8]}", PROD)
    return dict(accounts=[name], endpoints={name: endpoint}, store=store._block_document_name) | kwargs


# --- rules ---------------------------------------------------------------------------------


def q(query_id: str, user: str, status: str, minutes: float, blocked: float = 0, tag: str = "") -> LiveQuery:
    return LiveQuery(PROD, query_id, user, "WH", status, NOW - timedelta(minutes=minutes), minutes * MIN,
                     blocked * MIN, "SELECT 1", tag=tag)


def test_who_blocks_whom_and_what_may_be_cancelled():
    queries = [q("L2", "BOB", "RUNNING", 10), q("B1", "CAROL", "BLOCKED", 8, 8), q("B3", "ERIN", "BLOCKED", 7, 7),
               q("OWN", "US", "RUNNING", 500, tag=QUERY_TAG)]
    waits = [LockWait(PROD, "B1", "DB.S.T", NOW - timedelta(minutes=8), None, (("L2", "9001"),))]
    found = {(f.kind, f.resource_id) for f in judge_blocked(queries, waits, POLICY)}
    assert found == {(KIND_BLOCKER, "L2"), (KIND_BLOCKED, "B3")}
    unread = judge_blocked(queries, waits, POLICY, waits_known=False)
    assert {f.kind for f in unread} == {KIND_BLOCKED} and "could not be read" in unread[0].reason
    hard = SnowflakeQueryWatchPolicy(cancel_queries_over_minutes=5, cancel_blockers_over_minutes=5)
    assert sorted(p.query_id for p in plan_cancels(queries, waits, hard, QUERY_TAG)) == ["L2"]  # never OWN
    assert plan_cancels(queries, waits, POLICY, QUERY_TAG) == []  # no hard limit: nothing to offer


# --- the flow against fakesnow ------------------------------------------------------------------


def test_long_and_blocked_queries_with_their_blocker_announced_once_then_resolved(endpoint, store):
    seed(endpoint, LIVE, LOCK_WAITS)
    kwargs = watch(endpoint, store, policy=POLICY)
    findings = snowflake_query_watch(now=NOW, **kwargs)
    assert sorted((f.kind, f.resource_id, f.severity.value) for f in findings) == [
        (KIND_BLOCKED, "B3", "warning"), (KIND_BLOCKER, "L2", "warning"), (KIND_LONG, "L1", "warning")]
    blocker = next(f for f in findings if f.kind == KIND_BLOCKER)
    assert blocker.numbers["blocker_user"] == "BOB" and blocker.numbers["blocked_users"] == ["CAROL", "DAVE"]
    assert blocker.numbers["objects"] == ["ANALYTICS.PUBLIC.ORDERS"] and blocker.numbers["oldest_wait_s"] == 480
    assert "BOB's query L2" in blocker.reason and "CAROL's B1 (8 min)" in blocker.reason
    long = next(f for f in findings if f.kind == KIND_LONG)
    assert long.scope == PROD and "'?'" in long.reason and "2025" not in long.reason  # literals masked
    opened = {r["resource_id"]: r["last_alerted"] for r in store.findings_of(JOB, "open")}
    assert set(opened) == {"B3", "L2", "L1"}

    # Five minutes later ALICE's query has ended: it resolves; the blocker is not announced again.
    seed(endpoint, [r for r in LIVE if r["QUERY_ID"] != "L1"], LOCK_WAITS)
    snowflake_query_watch(now=NOW + timedelta(minutes=5), **kwargs)
    assert [r["resource_id"] for r in store.findings_of(JOB, "resolved")] == ["L1"]
    still = {r["resource_id"]: r["last_alerted"] for r in store.findings_of(JOB, "open")}
    assert still == {k: v for k, v in opened.items() if k != "L1"}  # not re-alerted


def test_without_lock_wait_history_the_blocker_stays_open_and_the_grant_is_named(endpoint, store):
    seed(endpoint, LIVE, LOCK_WAITS)
    kwargs = watch(endpoint, store, policy=POLICY)
    snowflake_query_watch(now=NOW, **kwargs)
    seed(endpoint, LIVE, None)  # the role lost its view of LOCK_WAIT_HISTORY
    findings = snowflake_query_watch(now=NOW + timedelta(minutes=5), **kwargs)
    assert {r["resource_id"] for r in store.findings_of(JOB, "open")} >= {"L1", "L2"}  # nothing resolved
    assert store.findings_of(JOB, "resolved") == []
    [denied] = [f for f in findings if f.kind == "snowflake-access-denied"]
    assert "GRANT DATABASE ROLE SNOWFLAKE.GOVERNANCE_VIEWER TO ROLE OPS_MONITOR" in denied.reason


def test_cancel_is_only_planned_without_apply_and_only_what_a_person_approves_with_it(endpoint, store):
    seed(endpoint, LIVE, LOCK_WAITS)
    hard = SnowflakeQueryWatchPolicy(login_timeout_seconds=5, cancel_queries_over_minutes=60,
                                     cancel_blockers_over_minutes=5, approval_timeout_seconds=120)
    kwargs = watch(endpoint, store, policy=hard)
    snowflake_query_watch(now=NOW, **kwargs)  # dry run: recorded as planned, nothing cancelled
    assert {(a["resource_id"], a["outcome"], a["dry_run"]) for a in store.actions_of(JOB)} == {
        ("L1", "planned", True), ("L2", "planned", True)}
    assert cancelled_ids(endpoint) == []

    state = run_and_answer(snowflake_query_watch, {"approved": ["L2"]}, now=NOW, apply=True, **kwargs)
    assert state.is_completed()
    assert cancelled_ids(endpoint) == ["L2"]  # the blocker only: L1 was offered, not approved
    applied = [a for a in store.actions_of(JOB) if not a["dry_run"]]
    assert [(a["resource_id"], a["outcome"]) for a in applied] == [("L2", "done")]
