"""Read what a Snowflake account spent from SNOWFLAKE.ACCOUNT_USAGE: one task run per account.

Aggregates are computed in Snowflake (per warehouse, user and day), so what comes back grows with
warehouses and users, not with queries; every read filters on its view's time column.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from rules.snowflake import ACCOUNT_USAGE, CREDITS_PER_HOUR
from rules.snowflake_cost import CostlyQuery, MeteredHour, UserUsage
from tasks.snowflake import (
    GOVERNANCE_VIEWER,
    USAGE_VIEWER,
    USE_WAREHOUSE,
    AccountRead,
    SnowflakeAccount,
    grants,
    open_session,
    read_into,
)

METERING_SQL = f"""
SELECT warehouse_name, start_time, credits_used_compute, credits_used_cloud_services
FROM {ACCOUNT_USAGE}.WAREHOUSE_METERING_HISTORY
WHERE start_time >= %(start)s AND start_time < %(end)s
"""
ATTRIBUTED_SQL = f"""
SELECT warehouse_name, user_name, TO_DATE(CONVERT_TIMEZONE('UTC', start_time)) AS day,
       SUM(credits_attributed_compute) AS credits, COUNT(*) AS queries
FROM {ACCOUNT_USAGE}.QUERY_ATTRIBUTION_HISTORY
WHERE start_time >= %(start)s AND start_time < %(end)s AND warehouse_name IS NOT NULL
GROUP BY 1, 2, 3
"""
EXECUTED_SQL = f"""
SELECT warehouse_name, warehouse_size, user_name, TO_DATE(CONVERT_TIMEZONE('UTC', start_time)) AS day,
       SUM(execution_time) AS execution_ms, COUNT(*) AS queries
FROM {ACCOUNT_USAGE}.QUERY_HISTORY
WHERE start_time >= %(start)s AND start_time < %(end)s AND warehouse_name IS NOT NULL AND execution_time > 0
GROUP BY 1, 2, 3, 4
"""
TOP_ATTRIBUTED_SQL = f"""
SELECT a.query_id, a.warehouse_name, a.user_name, a.start_time, a.credits_attributed_compute AS credits,
       SUBSTR(h.query_text, 1, %(chars)s) AS query_text
FROM {ACCOUNT_USAGE}.QUERY_ATTRIBUTION_HISTORY a
LEFT JOIN {ACCOUNT_USAGE}.QUERY_HISTORY h
  ON h.query_id = a.query_id AND h.start_time >= %(start)s AND h.start_time < %(end)s
WHERE a.start_time >= %(start)s AND a.start_time < %(end)s
ORDER BY a.credits_attributed_compute DESC
LIMIT %(top)s
"""
_SIZE_CREDITS = " ".join(f"WHEN '{size}' THEN {credits}" for size, credits in CREDITS_PER_HOUR.items())
TOP_EXECUTED_SQL = f"""
SELECT query_id, warehouse_name, user_name, start_time, execution_time, warehouse_size,
       SUBSTR(query_text, 1, %(chars)s) AS query_text
FROM {ACCOUNT_USAGE}.QUERY_HISTORY
WHERE start_time >= %(start)s AND start_time < %(end)s AND warehouse_name IS NOT NULL AND execution_time > 0
ORDER BY execution_time * CASE UPPER(REPLACE(warehouse_size, '-', '')) {_SIZE_CREDITS} ELSE 0 END DESC
LIMIT %(top)s
"""


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float, Decimal)) else 0.0


@task(name="snowflake-read-usage", task_run_name="read-usage-{account.block}", cache_policy=NONE)
@grants(USAGE_VIEWER, GOVERNANCE_VIEWER, USE_WAREHOUSE)
def read_usage(
    account: SnowflakeAccount,
    previous_start: datetime,
    start: datetime,
    end: datetime,
    use_attribution: bool,
    top: int,
    query_chars: int,
    login_timeout: int,
) -> AccountRead:
    """Metered credits (from `previous_start`, for the trend) and per-user usage in [start, end).

    Reads: `metering` (required), `attributed`, `executed`, `top_attributed`, `top_executed`.
    """
    read = AccountRead(account.scope)
    name = account.scope
    window = {"start": start, "end": end, "top": top, "chars": query_chars}
    with open_session(account, login_timeout, read) as session:
        if session is None:
            return read
        if not read_into(read, "metering", "WAREHOUSE_METERING_HISTORY", USAGE_VIEWER, lambda: [
            MeteredHour(name, r["warehouse_name"], r["start_time"], _num(r["credits_used_compute"]),
                        _num(r["credits_used_cloud_services"]))
            for r in session.rows(METERING_SQL, {"start": previous_start, "end": end})
        ], account):
            return read  # without metering there is nothing to report for this account
        if use_attribution:
            read_into(read, "attributed", "QUERY_ATTRIBUTION_HISTORY", USAGE_VIEWER, lambda: [
                UserUsage(name, r["warehouse_name"], r["user_name"] or "", r["day"], int(r["queries"]),
                          credits=_num(r["credits"]))
                for r in session.rows(ATTRIBUTED_SQL, window)
            ], account)
            if read.ok("attributed") and top:
                read_into(read, "top_attributed", "QUERY_ATTRIBUTION_HISTORY", USAGE_VIEWER, lambda: [
                    CostlyQuery(name, r["query_id"], r["warehouse_name"], r["user_name"] or "", r["start_time"],
                                r["query_text"] or "", credits=_num(r["credits"]))
                    for r in session.rows(TOP_ATTRIBUTED_SQL, window)
                ], account)
        read_into(read, "executed", "QUERY_HISTORY", GOVERNANCE_VIEWER, lambda: [
            UserUsage(name, r["warehouse_name"], r["user_name"] or "", r["day"], int(r["queries"]),
                      execution_ms=_num(r["execution_ms"]), warehouse_size=r["warehouse_size"] or "")
            for r in session.rows(EXECUTED_SQL, window)
        ], account)
        if read.ok("executed") and top:
            read_into(read, "top_executed", "QUERY_HISTORY", GOVERNANCE_VIEWER, lambda: [
                CostlyQuery(name, r["query_id"], r["warehouse_name"], r["user_name"] or "", r["start_time"],
                            r["query_text"] or "", execution_ms=_num(r["execution_time"]),
                            warehouse_size=r["warehouse_size"] or "")
                for r in session.rows(TOP_EXECUTED_SQL, window)
            ], account)
    return read


EXPENSIVE_ATTRIBUTED_SQL = f"""
SELECT a.query_id, a.warehouse_name, a.user_name, a.start_time,
       a.credits_attributed_compute + COALESCE(a.credits_used_query_acceleration, 0) AS credits,
       SUBSTR(h.query_text, 1, %(chars)s) AS query_text
FROM {ACCOUNT_USAGE}.QUERY_ATTRIBUTION_HISTORY a
LEFT JOIN {ACCOUNT_USAGE}.QUERY_HISTORY h ON h.query_id = a.query_id AND h.start_time >= %(start)s
WHERE a.start_time >= %(start)s
  AND a.credits_attributed_compute + COALESCE(a.credits_used_query_acceleration, 0) >= %(min_credits)s
"""
EXPENSIVE_EXECUTED_SQL = f"""
SELECT query_id, warehouse_name, warehouse_size, user_name, start_time, execution_time,
       SUBSTR(query_text, 1, %(chars)s) AS query_text
FROM {ACCOUNT_USAGE}.QUERY_HISTORY
WHERE start_time >= %(start)s AND warehouse_name IS NOT NULL
  AND execution_time * CASE UPPER(REPLACE(warehouse_size, '-', '')) {_SIZE_CREDITS} ELSE 0 END / 3600000 >= %(min_credits)s
"""


@task(name="snowflake-read-expensive-queries", task_run_name="read-expensive-{account.block}", cache_policy=NONE)
@grants(USAGE_VIEWER, GOVERNANCE_VIEWER, USE_WAREHOUSE)
def read_expensive_queries(
    account: SnowflakeAccount, start: datetime, min_credits: float, query_chars: int, login_timeout: int,
) -> AccountRead:
    """Finished queries started since `start` using at least `min_credits`: reads `attributed`
    (QUERY_ATTRIBUTION_HISTORY) and `executed` (QUERY_HISTORY, for an estimate); one is enough."""
    read = AccountRead(account.scope)
    name = account.scope
    params = {"start": start, "min_credits": min_credits, "chars": query_chars}
    with open_session(account, login_timeout, read) as session:
        if session is None:
            return read
        read_into(read, "attributed", "QUERY_ATTRIBUTION_HISTORY", USAGE_VIEWER, lambda: [
            CostlyQuery(name, r["query_id"], r["warehouse_name"] or "", r["user_name"] or "", r["start_time"],
                        r["query_text"] or "", credits=_num(r["credits"]))
            for r in session.rows(EXPENSIVE_ATTRIBUTED_SQL, params)
        ], account)
        read_into(read, "executed", "QUERY_HISTORY", GOVERNANCE_VIEWER, lambda: [
            CostlyQuery(name, r["query_id"], r["warehouse_name"] or "", r["user_name"] or "", r["start_time"],
                        r["query_text"] or "", execution_ms=_num(r["execution_time"]),
                        warehouse_size=r["warehouse_size"] or "")
            for r in session.rows(EXPENSIVE_EXECUTED_SQL, params)
        ], account)
    return read
