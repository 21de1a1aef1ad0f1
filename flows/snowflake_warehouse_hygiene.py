"""`snowflake-warehouse-hygiene`: warehouse settings that burn credits, and warehouses larger than their load.

Daily, per account: auto-suspend off or too long, auto-resume off, no resource monitor (on the
warehouse, nor for the account), warehouses that never queue and run far below capacity, each
with its $/month at risk (rules/snowflake_hygiene.py). Report only: the fix is one ALTER WAREHOUSE.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow

from blocks.store import OpsStore, load_store
from rules.snowflake import access_findings, check_accounts
from rules.snowflake_hygiene import (
    KIND_NO_MONITOR,
    KIND_OVERSIZED,
    SnowflakeHygienePolicy,
    judge_warehouses,
)
from tasks.notify import on_flow_failure
from tasks.snowflake import coverage_of, snowflake_accounts
from tasks.snowflake_warehouses import read_warehouses
from tasks.tell import tell

JOB = "snowflake-warehouse-hygiene"
# Without SHOW WAREHOUSES nothing is judged; without the others only their checks are skipped.
PARTIAL_READS = {"monitors": {KIND_NO_MONITOR}, "loads": {KIND_OVERSIZED}, "hours": set()}


@flow(name=JOB, on_failure=[on_flow_failure])
def snowflake_warehouse_hygiene(
    accounts: list[str] = ["snowflake"],  # noqa: B006 — Prefect parameters are copied per run
    policy: SnowflakeHygienePolicy = SnowflakeHygienePolicy(),  # noqa: B008
    endpoints: dict[str, str] | None = None,
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> list:
    """Judge every warehouse of each account.

    Args:
        accounts: Names of prefect-snowflake `SnowflakeConnector` blocks, one per account.
        policy: Auto-suspend limit, resource monitor rule, oversize thresholds, price per credit.
        endpoints: Per block name, a URL for that account instead of its public host (PrivateLink; `fakesnow://host:port` in tests and the demo).
        store: Name of the `OpsStore` block.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    targets = snowflake_accounts(check_accounts(accounts), endpoints)
    ops_store = load_store(store)
    now = now or datetime.now(timezone.utc)
    start = now - timedelta(days=policy.days)

    futures = [read_warehouses.submit(a, start, policy.login_timeout_seconds) for a in targets]
    reads = [f.result() for f in futures]

    findings = []
    for r in reads:
        if r.ok("warehouses"):
            findings += judge_warehouses(r.data["warehouses"], r.data.get("hours"), r.data.get("loads"),
                                         r.data.get("monitors"), policy)
        findings += access_findings(r.account, r.problems.values())
    total = sum(f.monthly_cost_usd or 0 for f in findings)
    tell(JOB, findings, ops_store, now, coverage_of(reads, PARTIAL_READS),
         repeat_interval=timedelta(hours=policy.repeat_interval_hours),
         notes=[f"{sum(len(r.data.get('warehouses', [])) for r in reads)} warehouses judged; "
                f"${total:,.2f}/month at risk (the findings' sum; checks overlap, so it is an upper bound)."])
    return findings
