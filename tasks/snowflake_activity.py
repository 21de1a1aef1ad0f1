"""Read what runs and waits in a Snowflake account now, and cancel approved queries.

Live queries come from the INFORMATION_SCHEMA.QUERY_HISTORY table function (no latency); the
blockers of blocked queries from ACCOUNT_USAGE.LOCK_WAIT_HISTORY. One task run per account.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from snowflake.connector.errors import Error as SnowflakeError

from blocks.store import OpsStore
from rules.snowflake import ACCOUNT_USAGE
from rules.snowflake_query_watch import LiveQuery, LockWait, PlannedCancel
from rules.text import redact
from tasks.snowflake import (
    GOVERNANCE_VIEWER,
    MONITOR_WAREHOUSES,
    OPERATE_WAREHOUSES,
    USE_WAREHOUSE,
    AccountRead,
    SnowflakeAccount,
    grants,
    open_session,
    read_into,
)

LOCK_WAITS_SQL = f"""
SELECT query_id, transaction_id, database_name, schema_name, object_name, requested_at, acquired_at,
       blocker_queries
FROM {ACCOUNT_USAGE}.LOCK_WAIT_HISTORY
WHERE requested_at >= %(start)s
"""


def _ms(value: Any) -> float:
    return float(value or 0)


def _blockers(value: Any) -> tuple[tuple[str, str], ...]:
    """`blocker_queries` (a JSON array; VARIANT comes back as its JSON text), without Snowflake's own."""
    items = json.loads(value) if isinstance(value, str) else (value or [])
    return tuple((str(b.get("query_id") or ""), str(b.get("transaction_id") or "")) for b in items
                 if not b.get("is_snowflake"))


def live_query(account: str, r: dict[str, Any]) -> LiveQuery:
    return LiveQuery(account, r["query_id"], r["user_name"] or "", r["warehouse_name"] or "",
                     (r["execution_status"] or "").upper(), r["start_time"], _ms(r["total_elapsed_time"]),
                     _ms(r["transaction_blocked_time"]), r["query_text"] or "", r.get("role_name") or "",
                     r.get("query_tag") or "")


@task(name="snowflake-read-activity", task_run_name="read-activity-{account.block}", cache_policy=NONE)
@grants(MONITOR_WAREHOUSES, GOVERNANCE_VIEWER, USE_WAREHOUSE)
def read_activity(account: SnowflakeAccount, lock_start: datetime, login_timeout: int) -> AccountRead:
    """Reads: `live` (required) and `lock_waits` since `lock_start`."""
    read = AccountRead(account.scope)
    with open_session(account, login_timeout, read) as session:
        if session is None:
            return read
        if not read_into(read, "live", "the live query history (INFORMATION_SCHEMA.QUERY_HISTORY)",
                         MONITOR_WAREHOUSES, lambda: [live_query(account.scope, r)
                                                      for r in session.command("LIVE QUERY HISTORY")], account):
            return read
        read_into(read, "lock_waits", "LOCK_WAIT_HISTORY", GOVERNANCE_VIEWER, lambda: [
            LockWait(account.scope, r["query_id"],
                     ".".join(p for p in (r["database_name"], r["schema_name"], r["object_name"]) if p),
                     r["requested_at"], r["acquired_at"], _blockers(r["blocker_queries"]))
            for r in session.rows(LOCK_WAITS_SQL, {"start": lock_start})
        ], account)
    return read


@task(name="snowflake-cancel-queries", cache_policy=NONE)
@grants(OPERATE_WAREHOUSES, write=True)
def cancel_queries(
    account: SnowflakeAccount,
    plans: Sequence[PlannedCancel],
    apply: bool,
    store: OpsStore,
    job: str,
    now: datetime,
    login_timeout: int,
) -> list[dict[str, Any]]:
    """SYSTEM$CANCEL_QUERY for each planned query (only with `apply`); every decision recorded."""
    log = get_run_logger()
    done = []
    read = AccountRead(account.scope)
    with open_session(account, login_timeout, read) if apply else nullcontext() as session:
        for plan in plans:
            outcome, detail = "planned", plan.reason
            if apply:
                if session is None:
                    outcome, detail = "failed", read.problems["login"].message
                else:
                    try:
                        answer = session.cancel_query(plan.query_id)
                        outcome = "done" if "terminated" in answer.lower() else "skipped"
                        detail = answer
                    except SnowflakeError as exc:
                        outcome, detail = "failed", redact(" ".join(str(exc.msg or exc).split()))[:300]
            log.info("cancel %s (%s): %s — %s", plan.query_id, plan.user, outcome, detail)
            store.record_action(job, action="cancel-query", resource_id=plan.query_id, scope=plan.account,
                                dry_run=not apply, outcome=outcome,
                                detail={"user": plan.user, "why": plan.reason, "result": detail},
                                flow_run_id=str(flow_run.id) if flow_run.id else None, now=now)
            done.append({"action": "cancel-query", "resource": plan.query_id, "user": plan.user,
                         "outcome": outcome, "detail": detail})
    return done

