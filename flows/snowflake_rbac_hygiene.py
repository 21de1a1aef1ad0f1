"""`snowflake-rbac-hygiene`: ACCOUNTADMIN holders, grants to PUBLIC, password sign-in without MFA,
roles unused for 90 days, per Snowflake account (rules/snowflake_rbac.py). Report only.

Not built yet: drift between a declared role/grant model (YAML or the Pulumi state) and the grants.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow

from blocks.store import load_store
from rules.snowflake import access_findings, check_accounts
from rules.snowflake_rbac import (
    KIND_ACCOUNTADMIN,
    KIND_PASSWORD_ONLY,
    KIND_UNUSED_ROLE,
    SnowflakeRbacPolicy,
    judge_rbac,
)
from tasks.notify import on_flow_failure
from tasks.snowflake import coverage_of, snowflake_accounts
from tasks.snowflake_rbac import read_rbac
from tasks.tell import tell

JOB = "snowflake-rbac-hygiene"
PARTIAL_READS = {"admins": {KIND_ACCOUNTADMIN}, "users": {KIND_PASSWORD_ONLY}, "roles": {KIND_UNUSED_ROLE}}


@flow(name=JOB, on_failure=[on_flow_failure])
def snowflake_rbac_hygiene(
    accounts: list[str] = ["snowflake"],  # noqa: B006 — Prefect parameters are copied per run
    policy: SnowflakeRbacPolicy = SnowflakeRbacPolicy(),  # noqa: B008
    endpoints: dict[str, str] | None = None,
    store: str = "ops-store",
    now: datetime | None = None,
) -> list:
    """Review the users, roles and grants of each account.

    Args:
        accounts: Names of prefect-snowflake `SnowflakeConnector` blocks, one per account.
        policy: Allowed ACCOUNTADMIN holders and PUBLIC grants, the unused-role period.
        endpoints: Per block name, a URL for that account instead of its public host (PrivateLink; `fakesnow://host:port` in tests and the demo).
        store: Name of the `OpsStore` block.
    """
    targets = snowflake_accounts(check_accounts(accounts), endpoints)
    ops_store = load_store(store)
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(days=policy.unused_role_days)

    futures = [read_rbac.submit(a, since, policy.login_timeout_seconds) for a in targets]
    reads = [f.result() for f in futures]

    findings = []
    for r in reads:
        if r.ok("public"):
            findings += judge_rbac(r.account, r.data.get("admins", []), r.data["public"], r.data.get("users"),
                                   r.data.get("roles"), policy, now)
        findings += access_findings(r.account, r.problems.values())
    tell(JOB, findings, ops_store, now, coverage_of(reads, PARTIAL_READS),
         repeat_interval=timedelta(hours=policy.repeat_interval_hours))
    return findings
