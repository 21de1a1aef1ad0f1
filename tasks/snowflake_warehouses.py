"""Read each Snowflake account's warehouses, resource monitors and 30 days of their metering and load."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from rules.snowflake import ACCOUNT_USAGE
from rules.snowflake_hygiene import HourCredits, Load, Warehouse
from tasks.snowflake import (
    MONITOR_WAREHOUSES,
    USAGE_VIEWER,
    USE_WAREHOUSE,
    AccountRead,
    SnowflakeAccount,
    grants,
    open_session,
    read_into,
)

HOURS_SQL = f"""
SELECT warehouse_name, start_time, credits_used_compute
FROM {ACCOUNT_USAGE}.WAREHOUSE_METERING_HISTORY
WHERE start_time >= %(start)s AND credits_used_compute > 0
"""
LOAD_SQL = f"""
SELECT warehouse_name, COUNT(*) AS intervals, AVG(avg_running) AS mean_running, MAX(avg_queued_load) AS max_queued
FROM {ACCOUNT_USAGE}.WAREHOUSE_LOAD_HISTORY
WHERE start_time >= %(start)s AND avg_running > 0
GROUP BY 1
"""


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "y")


def _text(value: Any) -> str | None:
    """SHOW output writes an absent resource monitor as the text `null`."""
    text = str(value).strip() if value is not None else ""
    return None if text.lower() in ("", "null", "none") else text


def warehouse(account: str, r: dict[str, Any]) -> Warehouse:
    suspend = r.get("auto_suspend")
    return Warehouse(account, r["name"], r["size"] or "", r.get("type") or "STANDARD",
                     int(suspend) if suspend not in (None, "", "null") else None, _flag(r.get("auto_resume")),
                     _text(r.get("resource_monitor")), int(r.get("min_cluster_count") or 1))


@task(name="snowflake-read-warehouses", task_run_name="read-warehouses-{account.block}", cache_policy=NONE)
@grants(MONITOR_WAREHOUSES, USAGE_VIEWER, USE_WAREHOUSE)
def read_warehouses(account: SnowflakeAccount, start: datetime, login_timeout: int) -> AccountRead:
    """Reads: `warehouses` (required), `monitors`, `hours` and `loads` since `start`."""
    read = AccountRead(account.scope)
    scope = account.scope
    with open_session(account, login_timeout, read) as session:
        if session is None:
            return read
        if not read_into(read, "warehouses", "SHOW WAREHOUSES", MONITOR_WAREHOUSES,
                         lambda: [warehouse(scope, r) for r in session.command("SHOW WAREHOUSES")], account):
            return read
        read_into(read, "monitors", "SHOW RESOURCE MONITORS", "MONITOR ON RESOURCE MONITOR <each monitor>",
                  lambda: [{"name": r.get("name"), "level": _text(r.get("level"))}
                           for r in session.command("SHOW RESOURCE MONITORS")], account)
        read_into(read, "hours", "WAREHOUSE_METERING_HISTORY", USAGE_VIEWER, lambda: [
            HourCredits(scope, r["warehouse_name"], r["start_time"], float(r["credits_used_compute"] or 0))
            for r in session.rows(HOURS_SQL, {"start": start})], account)
        read_into(read, "loads", "WAREHOUSE_LOAD_HISTORY", USAGE_VIEWER, lambda: [
            Load(scope, r["warehouse_name"], int(r["intervals"]), float(r["mean_running"] or 0),
                 float(r["max_queued"] or 0))
            for r in session.rows(LOAD_SQL, {"start": start})], account)
    return read
