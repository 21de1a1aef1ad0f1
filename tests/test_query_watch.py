"""query-watch against the real PostgreSQL: real pg_sleep queries and real LOCK TABLE conflicts,
found, announced once, resolved, cancelled only when allowed.

The Redshift dialects run the same scenarios on the same server through deployments/redshift_views.sql,
which reproduces the Redshift system views with the column layouts from the AWS documentation
(see the comments there) over live pg_stat_activity / pg_locks rows. Nothing is mocked.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from flows.query_watch import query_watch
from rules.findings import Severity
from rules.query_watch import (
    LockWait,
    QueryWatchPolicy,
    RunningQuery,
    judge_lock_waits,
    judge_long_queries,
    plan_actions,
)
from tests.approvals import run_and_answer
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)
from tests.redshift_fixture import (
    LockConflict,
    Session,
    active_for,
    load_redshift_views,
    wait_until,
    warehouse_block,
)

pytestmark = pytest.mark.slow  # many whole flow runs: its module starts early under `make test`
DIALECTS = ["postgres", "redshift", "redshift-serverless"]
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
FAST = dict(long_query_warn_minutes=0.02, long_query_critical_minutes=60,
            lock_wait_warn_minutes=0.02, lock_wait_critical_minutes=60)


@pytest.fixture(params=DIALECTS)
def dialect_db(request, pg_dsn):
    """(dialect, dsn): the Redshift dialects get the system-view fixture schema."""
    if request.param != "postgres":
        load_redshift_views(pg_dsn)
    return request.param, pg_dsn


def run(block, store, policy, now, **kw):
    return query_watch(policy=policy, warehouse=block._block_document_name,
                       store=store._block_document_name, now=now, **kw)


# --- pure rules ----------------------------------------------------------------------------

def q(pid, minutes, user="etl", text="select * from t where id = 42 and name = 'bob'"):
    return RunningQuery(pid=pid, user=user, database="dev", started=T0 - timedelta(minutes=minutes),
                        duration_s=minutes * 60, text=text, queue="etl")


def test_long_queries_are_judged_and_text_is_masked():
    policy = QueryWatchPolicy(long_query_warn_minutes=60, long_query_critical_minutes=240)
    found = judge_long_queries([q(1, 30), q(2, 61), q(3, 300)], policy, "db")
    assert [(f.resource_id, f.severity) for f in found] == [
        ("pid 3 since 2026-11-25T07:00:00Z", Severity.CRITICAL),
        ("pid 2 since 2026-11-25T10:59:00Z", Severity.WARNING),
    ]
    assert found[0].numbers["query"] == "select * from t where id = ? and name = '?'"
    assert "bob" not in found[0].reason and "42" not in found[0].reason
    assert "in queue etl" in found[0].reason


def test_a_long_query_waiting_on_a_lock_is_labelled_blocked_with_its_blocker():
    wait = LockWait(3, "etl", 10, "bi", T0 - timedelta(hours=6), "AccessExclusiveLock", "orders", 250 * 60)
    [stuck, slow] = judge_long_queries([q(3, 300), q(2, 280)], QueryWatchPolicy(), "db", [wait])
    assert "has been running for 5.0 h in queue etl, blocked for 4.2 h by bi (pid 10) on orders" in stuck.reason
    assert stuck.numbers["state"] == "blocked" and stuck.numbers["blocked_by_pid"] == 10
    assert "blocked" not in slow.reason and slow.numbers["state"] == "running"


def test_lock_waits_grouped_per_blocker():
    since = T0 - timedelta(hours=1)
    waits = [LockWait(11, "a", 10, "etl", since, "AccessShareLock", "orders", 400),
             LockWait(12, "b", 10, "etl", since, "RowExclusiveLock", "orders", 90),
             LockWait(21, "c", 20, "bi", since, "AccessShareLock", "users", 10)]
    [f] = judge_lock_waits(waits, QueryWatchPolicy(lock_wait_warn_minutes=1,
                                                   lock_wait_critical_minutes=5), "db")
    assert f.resource_id == "pid 10 since 2026-11-25T11:00:00Z"
    assert f.severity is Severity.CRITICAL
    assert f.numbers["blocked_pids"] == [11, 12] and f.numbers["oldest_wait_s"] == 400
    assert f.numbers["lock_modes"] == ["AccessShareLock", "RowExclusiveLock"]


def test_actions_need_hard_limit_and_allow_list_or_approval_and_never_own_session():
    queries = [q(1, 120, user="etl"), q(2, 120, user="bi"), q(3, 120, user="etl"), q(4, 120, "rdsdb")]
    none = QueryWatchPolicy(act_on_users=["etl"])
    assert plan_actions(queries, [], none, own_pid=None) == []  # no hard limit: never
    policy = QueryWatchPolicy(cancel_queries_over_minutes=90, act_on_users=["etl", "rdsdb"])
    plans = plan_actions(queries, [], policy, own_pid=3)
    # 1 is allow-listed, 2 needs a person's approval (by its finding id), 3 is us, 4 the system.
    assert [(p.pid, p.action, p.allow_listed) for p in plans] == [(1, "cancel", True), (2, "cancel", False)]
    assert plans[1].resource_id == "pid 2 since 2026-11-25T10:00:00Z"


# --- real sessions, every dialect ------------------------------------------------------------

def test_long_query_found_once_cancelled_only_when_allowed_then_resolved(dialect_db, store):
    dialect, dsn = dialect_db
    block = warehouse_block(dsn, dialect)
    sleeper = Session(dsn, "select pg_sleep(60) /* nightly load of 'customers' */")
    sleeper.start()
    wait_until(lambda: active_for(dsn, sleeper.pid, 2.5))
    if dialect == "redshift":  # WLM runs it in the etl queue (the fixture's query id is the pid)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("insert into stv_wlm_query_state values (1, 1, %s, 6, 1, getdate(), "
                         "'Running', 0, 0, 'normal')", (sleeper.pid,))

    found = run(block, store, QueryWatchPolicy(**FAST), T0)
    [f] = found
    assert f.numbers["queue"] == ("etl" if dialect == "redshift" else None)
    assert f.kind == "long-running-query" and f.numbers["pid"] == sleeper.pid
    assert f.numbers["user"] == "postgres" and f.numbers["database"] == block.database
    assert f.numbers["query"] == "select pg_sleep(?) /* nightly load of '?' */"
    assert f.numbers["duration_s"] >= 2
    assert f.scope == block.scope
    [row] = store.findings_of("query-watch", "open")
    assert row["resource_id"] == f.resource_id and row["last_alerted"] is not None

    # Second run: still open, not announced again.
    run(block, store, QueryWatchPolicy(**FAST), T0 + timedelta(minutes=5))
    [row2] = store.findings_of("query-watch", "open")
    assert row2["last_alerted"] == row["last_alerted"]

    # Over the hard limit, not allow-listed: apply asks a person, who approves nothing.
    hard = dict(FAST, cancel_queries_over_minutes=0.02)
    state = run_and_answer(query_watch, {"approved": []}, policy=QueryWatchPolicy(**hard),
                           warehouse=block._block_document_name, store=store._block_document_name,
                           now=T0 + timedelta(minutes=10), apply=True)
    assert state.is_completed() and sleeper.is_alive() and store.actions_of("query-watch") == []

    # Allow-listed but a dry run: planned and recorded, not cancelled.
    listed = QueryWatchPolicy(**hard, act_on_users=["postgres"])
    run(block, store, listed, T0 + timedelta(minutes=15))
    assert sleeper.is_alive()
    [planned] = store.actions_of("query-watch")
    assert (planned["action"], planned["outcome"], planned["dry_run"]) == ("cancel", "planned", True)
    assert planned["resource_id"] == f.resource_id

    # apply=True: really cancelled; our own monitoring session (also postgres) is untouched.
    run(block, store, listed, T0 + timedelta(minutes=20), apply=True)
    sleeper.join(timeout=10)
    assert isinstance(sleeper.error, psycopg.errors.QueryCanceled)
    done = store.actions_of("query-watch")[-1]
    assert (done["outcome"], done["dry_run"]) == ("done", False)

    # The query is gone: the finding resolves.
    assert run(block, store, QueryWatchPolicy(**FAST), T0 + timedelta(minutes=25)) == []
    [resolved] = store.findings_of("query-watch", "resolved")
    assert resolved["resource_id"] == f.resource_id


def test_lock_conflict_reports_blocker_and_waiter_and_terminates_when_approved(dialect_db, store):
    dialect, dsn = dialect_db
    block = warehouse_block(dsn, dialect)
    policy = QueryWatchPolicy(**dict(FAST, long_query_warn_minutes=60, long_query_critical_minutes=60))
    with LockConflict(dsn) as lock:
        wait_until(lambda: active_for(dsn, lock.waiter_pid, 2.5))
        [f] = run(block, store, policy, T0)
        assert f.kind == "lock-blocker"
        assert f.numbers["blocking_pid"] == lock.blocker_pid
        assert f.numbers["blocked_pids"] == [lock.waiter_pid]
        assert f.numbers["relations"] == ["orders"]
        assert f.numbers["lock_modes"] == ["AccessShareLock"]
        assert f.numbers["oldest_wait_s"] >= 2
        assert f.numbers["blocker_user"] == "postgres"
        assert f.resource_id.startswith(f"pid {lock.blocker_pid} since ")

        # A person approves terminating this blocker (its finding id); apply ends its session.
        hard = QueryWatchPolicy(**dict(FAST, long_query_warn_minutes=60,
                                       long_query_critical_minutes=60,
                                       terminate_blockers_over_minutes=0.02))
        state = run_and_answer(query_watch, {"approved": [f.resource_id]}, policy=hard,
                               warehouse=block._block_document_name, store=store._block_document_name,
                               now=T0 + timedelta(minutes=5), apply=True)
        assert state.is_completed(), state
        lock.waiter.join(timeout=10)
        assert lock.waiter.finished  # the waiter got its lock once the blocker was gone
        [action] = store.actions_of("query-watch")
        assert (action["action"], action["outcome"]) == ("terminate", "done")
        with pytest.raises(psycopg.OperationalError):
            lock.holder.execute("select 1")

    assert run(block, store, policy, T0 + timedelta(minutes=10)) == []
    assert [r["kind"] for r in store.findings_of("query-watch", "resolved")] == ["lock-blocker"]


# --- bad input: the run completes and says what is wrong ------------------------------------

def test_user_without_access_to_the_system_views_gets_a_clear_finding(dialect_db, store, pg_admin):
    dialect, dsn = dialect_db
    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"create role {role} login")
    try:
        block = warehouse_block(dsn, dialect, user=role)
        [f] = run(block, store, QueryWatchPolicy(**FAST), T0)
        assert f.kind == "monitoring-views-denied" and f.severity is Severity.CRITICAL
        assert role in f.reason
        fix = {"postgres": "pg_monitor", "redshift": "SYSLOG ACCESS UNRESTRICTED",
               "redshift-serverless": "sys:monitor"}[dialect]
        assert fix in f.reason
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f"drop role if exists {role}")


def test_unreachable_warehouse_is_a_finding_and_the_run_completes(pg_dsn, store):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    block = warehouse_block(pg_dsn, "redshift", port=port)
    state = query_watch(warehouse=block._block_document_name, store=store._block_document_name,
                        now=T0, return_state=True)
    assert state.is_completed()
    [f] = state.result()
    assert f.kind == "warehouse-unreachable" and "`host` and `port`" in f.reason


@scenario_for("query-watch")
def least_privilege_scenario(aws, pg_dsn, pg_admin):
    """A real long query, watched through a Redshift block with IAM auth: moto hands out the database
    user `IAM:<user>`, which the local PostgreSQL (trust auth) lets in as a role of that name."""
    import boto3
    from prefect_aws import AwsCredentials

    from rules.query_watch import QueryWatchPolicy, blocker_resource_id
    from tests.redshift_fixture import (
        Session,
        active_for,
        load_redshift_views,
        wait_until,
        warehouse_block,
    )

    load_redshift_views(pg_dsn)
    cluster, user = f"c-{uuid.uuid4().hex[:6]}", f"lp_{uuid.uuid4().hex[:8]}"
    boto3.client("redshift", region_name="us-east-1").create_cluster(
        ClusterIdentifier=cluster, NodeType="ra3.xlplus", MasterUsername="admin", MasterUserPassword="Passw0rd!",
        ClusterType="single-node")
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'create role "IAM:{user}" login in role pg_monitor')
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'grant select on all tables in schema public to "IAM:{user}"')
    sleeper = Session(pg_dsn, "select pg_sleep(60)")
    sleeper.start()
    wait_until(lambda: active_for(pg_dsn, sleeper.pid, 2.5))
    with psycopg.connect(pg_dsn) as conn:
        [started] = conn.execute("select query_start from pg_stat_activity where pid = %s", (sleeper.pid,)).fetchone()

    def wire(creds: str) -> dict:
        block = warehouse_block(pg_dsn, "redshift", user=user, password=None, iam_auth=True, region="us-east-1",
                                cluster_identifier=cluster, aws_credentials=AwsCredentials.load(creds))
        return {"warehouse": block._block_document_name}

    yield Scenario(query_watch, plain_creds(), dict(policy=QueryWatchPolicy(**FAST), now=T0),
                   {blocker_resource_id(sleeper.pid, started)}, drop="redshift:GetClusterCredentials", wire=wire)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("select pg_cancel_backend(%s)", (sleeper.pid,))
        conn.execute(f'drop owned by "IAM:{user}"')
    sleeper.join(10)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'drop role "IAM:{user}"')
