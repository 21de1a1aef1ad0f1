"""`snowflake-rbac-hygiene`: ACCOUNTADMIN holders, grants to PUBLIC, password sign-in without MFA,
roles unused for 90 days (rules/snowflake_rbac.py), and drift between a declared role/grant model
and the grants of its roles in ACCOUNT_USAGE (rules/snowflake_rbac_drift.py), per Snowflake account.
Report only.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow

from blocks.store import OpsStore, load_store
from rules.snowflake import access_findings, check_accounts
from rules.snowflake_rbac import (
    KIND_ACCOUNTADMIN,
    KIND_PASSWORD_ONLY,
    KIND_UNUSED_ROLE,
    SnowflakeRbacPolicy,
    judge_rbac,
)
from rules.snowflake_rbac_drift import AS_OF, DRIFT_KINDS, judge_grant_drift, present_grants
from tasks.notify import on_flow_failure
from tasks.snowflake import coverage_of, snowflake_accounts
from tasks.snowflake_rbac import read_declared_models, read_declared_role_grants, read_rbac
from tasks.tell import tell

JOB = "snowflake-rbac-hygiene"
PARTIAL_READS = {"admins": {KIND_ACCOUNTADMIN}, "users": {KIND_PASSWORD_ONLY}, "roles": {KIND_UNUSED_ROLE}}
DRIFT_READS = {"roles": DRIFT_KINDS, "grants_to_roles": DRIFT_KINDS, "grants_to_users": DRIFT_KINDS}
DRIFT_NOTE = f"Declared-grants drift: grants {AS_OF} (a grant made or revoked in the last 2 hours may not show yet)."


@flow(name=JOB, on_failure=[on_flow_failure])
def snowflake_rbac_hygiene(
    accounts: list[str] = ["snowflake"],  # noqa: B006 — Prefect parameters are copied per run
    policy: SnowflakeRbacPolicy = SnowflakeRbacPolicy(),  # noqa: B008
    endpoints: dict[str, str] | None = None,
    declared_grants: dict[str, str] | None = None,
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> list:
    """Review the users, roles and grants of each account.

    Args:
        accounts: Names of prefect-snowflake `SnowflakeConnector` blocks, one per account.
        policy: Allowed ACCOUNTADMIN holders and PUBLIC grants, the unused-role period.
        endpoints: Per block name, a URL for that account instead of its public host (PrivateLink; `fakesnow://host:port` in tests and the demo).
        declared_grants: Per block name, a YAML role/grant model in this repository (e.g. `config/snowflake_roles.yaml`) to compare with the account's grants; unset: no drift check.
        store: Name of the `OpsStore` block.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    targets = snowflake_accounts(check_accounts(accounts), endpoints)
    models = read_declared_models(declared_grants, accounts)
    ops_store = load_store(store)
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(days=policy.unused_role_days)

    futures = [read_rbac.submit(a, since, policy.login_timeout_seconds) for a in targets]
    drift_futures = {a.scope: read_declared_role_grants.submit(a, sorted(models[a.block][1].roles),
                                                               policy.login_timeout_seconds)
                     for a in targets if a.block in models}
    reads = [f.result() for f in futures]
    drift_reads = {scope: f.result() for scope, f in drift_futures.items()}

    findings = []
    for a, r in zip(targets, reads, strict=True):
        if r.ok("public"):
            findings += judge_rbac(r.account, r.data.get("admins", []), r.data["public"], r.data.get("users"),
                                   r.data.get("roles"), policy, now)
        problems = list(r.problems.values())
        d = drift_reads.get(a.scope)
        if d is not None:
            if all(d.ok(name) for name in DRIFT_READS):
                origin, declared = models[a.block]
                findings += judge_grant_drift(a.scope, declared, present_grants(
                    d.data["roles"], d.data["grants_to_roles"], d.data["grants_to_users"]), origin)
            problems += [p for p in d.problems.values() if p not in problems]
        findings += access_findings(r.account, problems)
    coverage = coverage_of(reads, PARTIAL_READS)
    coverage.merge(coverage_of(list(drift_reads.values()), DRIFT_READS))
    tell(JOB, findings, ops_store, now, coverage, repeat_interval=timedelta(hours=policy.repeat_interval_hours),
         notes=[DRIFT_NOTE] if drift_reads else [])
    return findings
