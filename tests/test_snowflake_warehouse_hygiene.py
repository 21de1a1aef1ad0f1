"""Snowflake warehouse hygiene against a fakesnow server, with the real connector.

fakesnow's SHOW WAREHOUSES returns one fixed warehouse and it has no SHOW RESOURCE MONITORS: both
are read from stand-in tables with the commands' documented output columns; metering and load
history are ACCOUNT_USAGE tables with the views' columns (deployments/local_snowflake.py).
"""

from __future__ import annotations

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
from flows.snowflake_warehouse_hygiene import JOB, snowflake_warehouse_hygiene
from rules.snowflake_hygiene import (
    KIND_NO_MONITOR,
    KIND_OVERSIZED,
    KIND_RESUME_OFF,
    KIND_SUSPEND_LONG,
    KIND_SUSPEND_OFF,
    SnowflakeHygienePolicy,
)
from tests.test_snowflake_cost_report import metered

AU = "SNOWFLAKE.ACCOUNT_USAGE"
PROD = "acme-prod"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
POLICY = SnowflakeHygienePolicy(login_timeout_seconds=5)  # $3 a credit, 600 s, 30 days


def warehouse(name: str, size: str, suspend: int | None, resume: bool, monitor: str | None) -> dict:
    return {"name": name, "state": "SUSPENDED", "type": "STANDARD", "size": size, "min_cluster_count": 1,
            "max_cluster_count": 1, "started_clusters": 0, "running": 0, "queued": 0, "is_default": "N",
            "is_current": "N", "auto_suspend": suspend, "auto_resume": "true" if resume else "false",
            "available": "", "provisioning": "", "quiescing": "", "other": "", "created_on": NOW,
            "resumed_on": NOW, "updated_on": NOW, "owner": "SYSADMIN", "comment": "",
            "enable_query_acceleration": "false", "query_acceleration_max_scale_factor": 8,
            "resource_monitor": monitor or "null", "scaling_policy": "STANDARD"}


def monitor(name: str, level: str | None) -> dict:
    return {"name": name, "credit_quota": 100, "used_credits": 1, "remaining_credits": 99, "level": level,
            "frequency": "MONTHLY", "start_time": NOW, "end_time": None, "notify_at": "90%", "suspend_at": "100%",
            "suspend_immediately_at": None, "created_on": NOW, "owner": "ACCOUNTADMIN", "comment": "",
            "notify_users": ""}


def load(name: str, intervals: int, running: float, queued: float) -> list[dict]:
    return [{"START_TIME": NOW - timedelta(days=2, minutes=5 * i), "END_TIME": NOW - timedelta(days=2, minutes=5 * i - 5),
             "WAREHOUSE_ID": 1, "WAREHOUSE_NAME": name, "AVG_RUNNING": running, "AVG_QUEUED_LOAD": queued,
             "AVG_QUEUED_PROVISIONING": 0, "AVG_BLOCKED": 0} for i in range(intervals)]


def day(d: int, hour: int) -> datetime:
    return datetime(2026, 11, d, hour, tzinfo=timezone.utc)


WAREHOUSES = [
    warehouse("ETL_WH", "Medium", None, True, "ETL_MON"),  # never suspends
    warehouse("BI_WH", "Large", 3600, True, None),  # idles an hour; no monitor
    warehouse("LOAD_WH", "X-Large", 60, False, "LOAD_MON"),  # no auto-resume; far too big for its load
    warehouse("GOOD_WH", "Small", 60, True, "GOOD_MON"),  # trap: fine, and it queues
    warehouse("TINY_WH", "X-Small", 300, True, "TINY_MON"),  # trap: idle load, but there is no smaller size
    warehouse("SPARSE_WH", "Medium", 60, True, "SPARSE_MON"),  # trap: too little load history to judge size
]
METERED = [metered("BI_WH", day(22, 9), 8, 0), metered("BI_WH", day(22, 10), 8, 0), metered("BI_WH", day(23, 14), 8, 0),
           metered("LOAD_WH", day(20, 3), 16, 0), metered("LOAD_WH", day(20, 4), 14, 0),
           metered("GOOD_WH", day(21, 3), 2, 0), metered("BI_WH", datetime(2026, 10, 20, 3, tzinfo=timezone.utc), 50, 0)]  # before the 30 days
LOADS = (load("LOAD_WH", 200, 0.1, 0) + load("GOOD_WH", 200, 0.1, 0.5) + load("TINY_WH", 200, 0.05, 0)
         + load("SPARSE_WH", 10, 0.05, 0))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with fakesnow_server() as url:
        yield url


def seed(endpoint: str, monitors: list[dict]) -> None:
    with seed_connection(endpoint) as conn:
        create_account_usage(conn, views=["WAREHOUSE_METERING_HISTORY", "WAREHOUSE_LOAD_HISTORY"])
        insert_rows(conn, "STAND_IN.PUBLIC.SHOW_WAREHOUSES", WAREHOUSES)
        insert_rows(conn, "STAND_IN.PUBLIC.SHOW_RESOURCE_MONITORS", monitors)
        insert_rows(conn, f"{AU}.WAREHOUSE_METERING_HISTORY", METERED)
        insert_rows(conn, f"{AU}.WAREHOUSE_LOAD_HISTORY", LOADS)


def test_wasteful_warehouses_with_money_at_risk_and_the_traps_stay_quiet(endpoint, store):
    seed(endpoint, [monitor(m, "WAREHOUSE") for m in ("ETL_MON", "LOAD_MON", "GOOD_MON", "TINY_MON", "SPARSE_MON")])
    name = save_connector(f"sf-{uuid.uuid4().hex[:8]}", PROD)
    kwargs = dict(accounts=[name], endpoints={name: endpoint}, store=store._block_document_name, policy=POLICY)
    findings = snowflake_warehouse_hygiene(now=NOW, **kwargs)
    month = 730 / 720
    got = {(f.kind, f.resource_id): (f.severity.value, f.monthly_cost_usd) for f in findings}
    assert got == {
        (KIND_SUSPEND_OFF, "ETL_WH"): ("critical", 4 * 730 * 3.0),  # Medium, every hour of a month
        # 2 bursts ended in 30 days, each idling 3000 s too long on 8 credits/h
        (KIND_SUSPEND_LONG, "BI_WH"): ("warning", pytest.approx(2 * month * 3000 / 3600 * 8 * 3.0, abs=0.01)),
        (KIND_NO_MONITOR, "BI_WH"): ("warning", pytest.approx(24 * month * 3.0, abs=0.01)),
        (KIND_RESUME_OFF, "LOAD_WH"): ("warning", None),
        (KIND_OVERSIZED, "LOAD_WH"): ("info", pytest.approx(30 * month * 3.0 / 2, abs=0.01)),
    }
    oversized = next(f for f in findings if f.kind == KIND_OVERSIZED)
    assert oversized.numbers["smaller"] == "Large" and "ALTER" not in oversized.reason
    assert all(f.scope == PROD for f in findings)

    # An account-level resource monitor caps BI_WH too: that finding resolves, the others stay.
    seed(endpoint, [monitor("ACCOUNT_MON", "ACCOUNT")])
    snowflake_warehouse_hygiene(now=NOW + timedelta(days=1), **kwargs)
    assert [(r["kind"], r["resource_id"]) for r in store.findings_of(JOB, "resolved")] == [(KIND_NO_MONITOR, "BI_WH")]
    assert len(store.findings_of(JOB, "open")) == 4
