"""SQL collectors and actions for Redshift (provisioned, Serverless) and PostgreSQL.

One task run per warehouse: it opens one read-only connection with a short statement
timeout and runs one query per check, each in its own read-only transaction, so a check the
user may not read (permission denied) or that times out does not sink the others.

Which views each dialect reads:
- `postgres`: pg_stat_activity, pg_locks, pg_blocking_pids() (sessions of the block's database).
- `redshift`: STV_RECENTS, STV_INFLIGHT, STV_WLM_QUERY_STATE, STV_WLM_SERVICE_CLASS_CONFIG;
  locks the way amazon-redshift-utils' blocking-locks view does: SVV_TRANSACTIONS waiters
  joined to granted pg_locks on the same relation, STV_RECENTS for the running query text.
- `redshift-serverless` (only SYS_ monitoring views exist there): SYS_QUERY_HISTORY, pg_user,
  pg_locks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from prefect import get_run_logger, task
from prefect.runtime import flow_run

from blocks.store import OpsStore
from blocks.warehouse import WarehouseConnection, WarehouseUnavailable
from rules.query_watch import LockWait, PlannedAction, RunningQuery
from rules.redshift_health import Spill, WlmQueue
from rules.text import redact
from tasks.limits import warehouse_slots

# --- long-running queries -----------------------------------------------------------------

_QUERIES_POSTGRES = """
select pid, coalesce(usename, '') as user_name, coalesce(datname, '') as db_name,
       query_start as started, now() as db_now, coalesce(query, '') as query,
       null as queue, state
from pg_stat_activity
where state = 'active' and backend_type = 'client backend'
  and datname = current_database() and pid <> pg_backend_pid()
  and query_start <= now() - make_interval(secs => %(min_s)s)
order by query_start
"""

_QUERIES_REDSHIFT = """
select r.pid, trim(r.user_name) as user_name, trim(r.db_name) as db_name,
       r.starttime as started, getdate() as db_now, trim(r.query) as query,
       trim(c.name) as queue, coalesce(w.state, 'running') as state
from stv_recents r
left join (select pid, max(query) as query from stv_inflight group by pid) i on i.pid = r.pid
left join (select query, min(service_class) as service_class, lower(max(trim(state))) as state
           from stv_wlm_query_state group by query) w on w.query = i.query
left join stv_wlm_service_class_config c on c.service_class = w.service_class
where r.status = 'Running' and r.pid <> pg_backend_pid()
  and r.starttime <= dateadd('second', -%(min_s)s, getdate())
order by r.starttime
"""

_QUERIES_SERVERLESS = """
select h.session_id as pid, coalesce(trim(u.usename), h.user_id::varchar) as user_name,
       trim(h.database_name) as db_name, h.start_time as started, getdate() as db_now,
       trim(h.query_text) as query, null as queue, trim(h.status) as state
from sys_query_history h
left join pg_user u on u.usesysid = h.user_id
where trim(h.status) in ('planning', 'queued', 'running', 'returning')
  and h.session_id <> pg_backend_pid()
  and h.start_time >= dateadd('day', -7, getdate())
  and h.start_time <= dateadd('second', -%(min_s)s, getdate())
order by h.start_time
"""

# --- lock waits: one row per (waiter, blocker) ---------------------------------------------

_LOCKS_POSTGRES = """
select w.pid as waiter_pid, coalesce(w.usename, '') as waiter_user,
       b.pid as blocker_pid, coalesce(b.usename, '') as blocker_user,
       coalesce(b.xact_start, b.backend_start) as blocker_since,
       coalesce(l.mode, '') as lock_mode,
       coalesce(l.relation::regclass::text, l.locktype, '') as relation,
       coalesce(l.waitstart, w.query_start) as waiting_since, now() as db_now,
       coalesce(b.query, '') as blocker_query
from pg_stat_activity w
cross join lateral unnest(pg_blocking_pids(w.pid)) as bp(pid)
join pg_stat_activity b on b.pid = bp.pid
left join pg_locks l on l.pid = w.pid and not l.granted
where w.wait_event_type = 'Lock' and w.datname = current_database()
  and w.pid <> pg_backend_pid()
"""

_LOCKS_REDSHIFT = """
select w.pid as waiter_pid, trim(w.txn_owner) as waiter_user,
       b.pid as blocker_pid, trim(bt.txn_owner) as blocker_user, bt.txn_start as blocker_since,
       trim(w.lock_mode) as lock_mode, coalesce(trim(c.relname), w.relation::varchar) as relation,
       coalesce(wr.starttime, w.txn_start) as waiting_since, getdate() as db_now,
       coalesce(trim(br.query), '') as blocker_query
from svv_transactions w
left join pg_database d on d.datname = trim(w.txn_db)
join (select distinct pid, database, relation from pg_locks where granted) b
  on b.relation = w.relation and b.database = d.oid and b.pid <> w.pid
left join (select pid, max(txn_owner) as txn_owner, min(txn_start) as txn_start
           from svv_transactions group by pid) bt on bt.pid = b.pid
left join pg_class c on c.oid = w.relation
left join stv_recents wr on wr.pid = w.pid and wr.status = 'Running'
left join stv_recents br on br.pid = b.pid and br.status = 'Running'
where not w.granted and w.lockable_object_type = 'relation' and w.pid <> pg_backend_pid()
"""

# Serverless has no SVV_TRANSACTIONS/STV_RECENTS: pg_locks for who waits on whom,
# SYS_SESSION_HISTORY for the blocking session (user, since when), and the running
# SYS_QUERY_HISTORY rows for the waiter's start and the blocker's query text.
_LOCKS_SERVERLESS = """
select w.pid as waiter_pid, coalesce(trim(wu.usename), '') as waiter_user,
       b.pid as blocker_pid, coalesce(trim(bu.usename), '') as blocker_user,
       bs.start_time as blocker_since, w.mode as lock_mode,
       coalesce(trim(c.relname), w.relation::varchar) as relation,
       coalesce(wq.start_time, getdate()) as waiting_since, getdate() as db_now,
       coalesce(trim(bq.query_text), '') as blocker_query
from pg_locks w
join (select distinct pid, database, relation from pg_locks where granted) b
  on b.relation = w.relation and b.database = w.database and b.pid <> w.pid
left join pg_class c on c.oid = w.relation
left join (select session_id, max(user_id) as user_id, min(start_time) as start_time
           from sys_query_history
           where trim(status) in ('planning', 'queued', 'running', 'returning')
           group by session_id) wq on wq.session_id = w.pid
left join (select session_id, max(query_text) as query_text
           from sys_query_history
           where trim(status) in ('planning', 'queued', 'running', 'returning')
           group by session_id) bq on bq.session_id = b.pid
left join (select session_id, max(user_id) as user_id, min(start_time) as start_time
           from sys_session_history where end_time is null
           group by session_id) bs on bs.session_id = b.pid
left join pg_user wu on wu.usesysid = wq.user_id
left join pg_user bu on bu.usesysid = bs.user_id
where not w.granted and w.relation is not null and w.pid <> pg_backend_pid()
"""

# --- WLM queue state -----------------------------------------------------------------------

# Service classes 1-4 are internal, 5 the superuser queue; manual WLM uses 6-13, auto WLM 100+.
_WLM_REDSHIFT = """
select c.service_class, trim(c.name) as queue, c.num_query_tasks as slots,
       sum(case when trim(w.state) like 'Queued%' then 1 else 0 end) as queued,
       sum(case when trim(w.state) in ('Running', 'Returning') then 1 else 0 end) as executing,
       coalesce(max(case when trim(w.state) like 'Queued%' then w.queue_time end), 0)
         as longest_queue_us
from stv_wlm_service_class_config c
left join stv_wlm_query_state w on w.service_class = c.service_class
where c.service_class >= 6
group by c.service_class, c.name, c.num_query_tasks
order by c.service_class
"""

_WLM_SERVERLESS = """
select 0 as service_class, 'serverless' as queue, null as slots,
       sum(case when trim(status) = 'queued' then 1 else 0 end) as queued,
       sum(case when trim(status) in ('running', 'returning') then 1 else 0 end) as executing,
       min(case when trim(status) = 'queued' then start_time end) as oldest_queued,
       getdate() as db_now
from sys_query_history
where trim(status) in ('queued', 'running', 'returning')
  and start_time >= dateadd('day', -7, getdate())
"""

# Redshift has no memory metric: queries spilling to disk are the sign of memory pressure.
# The SYS views serve provisioned clusters and Serverless alike (1 MB blocks).
_SPILL = """
select count(*) as queries, count(case when d.blocks > 0 then 1 end) as spilled,
       coalesce(sum(d.blocks), 0) as spilled_mb
from sys_query_history h
left join (select query_id,
                  sum(coalesce(spilled_block_local_disk, 0) + coalesce(spilled_block_remote_disk, 0)) as blocks
           from sys_query_detail group by query_id) d on d.query_id = h.query_id
where h.start_time >= dateadd('minute', -%(minutes)s, getdate())
"""

_QUERIES = {"postgres": _QUERIES_POSTGRES, "redshift": _QUERIES_REDSHIFT,
            "redshift-serverless": _QUERIES_SERVERLESS}
_LOCKS = {"postgres": _LOCKS_POSTGRES, "redshift": _LOCKS_REDSHIFT,
          "redshift-serverless": _LOCKS_SERVERLESS}

# What to grant when a check is denied, per dialect.
ACCESS_FIX = {
    "postgres": "grant the monitoring user the pg_monitor role (GRANT pg_monitor TO <user>)",
    "redshift": "make the monitoring user a superuser or ALTER USER <user> SYSLOG ACCESS UNRESTRICTED",
    "redshift-serverless": "grant the monitoring user the sys:monitor role "
                           "(GRANT ROLE sys:monitor TO <user>)",
}


def _utc(ts: datetime | None) -> datetime | None:
    # Redshift timestamps are naive UTC; PostgreSQL's are aware.
    if ts is None:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _seconds(later: datetime | None, earlier: datetime | None) -> float:
    if later is None or earlier is None:
        return 0.0
    return max(0.0, (_utc(later) - _utc(earlier)).total_seconds())


def _rows(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None) -> list[dict]:
    with conn.transaction(), conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def own_pid(conn: psycopg.Connection) -> int:
    return _rows(conn, "select pg_backend_pid() as pid")[0]["pid"]


def check_postgres_visibility(conn: psycopg.Connection) -> None:
    """PostgreSQL hides other users' queries from unprivileged roles: say so instead of silence."""
    row = _rows(conn, "select rolsuper or pg_has_role(current_user, 'pg_read_all_stats', 'member')"
                      " as sees_all from pg_roles where rolname = current_user")
    if not row or not row[0]["sees_all"]:
        raise psycopg.errors.InsufficientPrivilege(
            "cannot see other users' sessions in pg_stat_activity (needs pg_read_all_stats)"
        )


def running_queries(conn: psycopg.Connection, dialect: str, min_seconds: int) -> list[RunningQuery]:
    """Queries running (or queued) for at least `min_seconds`, never our own session."""
    return [
        RunningQuery(
            pid=r["pid"], user=r["user_name"] or "", database=r["db_name"] or "",
            started=_utc(r["started"]), duration_s=_seconds(r["db_now"], r["started"]),
            text=(r["query"] or "").strip(), queue=r["queue"], state=(r["state"] or "running").lower(),
        )
        for r in _rows(conn, _QUERIES[dialect], {"min_s": int(min_seconds)})
    ]


def lock_waits(conn: psycopg.Connection, dialect: str) -> list[LockWait]:
    """Every (waiting session, blocking session) pair right now, never our own session."""
    return [
        LockWait(
            waiter_pid=r["waiter_pid"], waiter_user=r["waiter_user"] or "",
            blocker_pid=r["blocker_pid"], blocker_user=r["blocker_user"] or "",
            blocker_since=_utc(r["blocker_since"]), lock_mode=r["lock_mode"] or "",
            relation=r["relation"] or "", waited_s=_seconds(r["db_now"], r["waiting_since"]),
            blocker_text=(r["blocker_query"] or "").strip(),
        )
        for r in _rows(conn, _LOCKS[dialect])
    ]


def wlm_queues(conn: psycopg.Connection, dialect: str) -> list[WlmQueue]:
    """Per WLM queue: slots, queued, executing, and the longest current queue wait."""
    if dialect == "postgres":
        return []
    if dialect == "redshift":
        return [
            WlmQueue(queue=r["queue"] or str(r["service_class"]), service_class=r["service_class"],
                     slots=r["slots"], queued=int(r["queued"] or 0),
                     executing=int(r["executing"] or 0),
                     longest_wait_s=(r["longest_queue_us"] or 0) / 1_000_000)
            for r in _rows(conn, _WLM_REDSHIFT)
        ]
    r = _rows(conn, _WLM_SERVERLESS)[0]
    return [WlmQueue(queue="serverless", service_class=0, slots=None, queued=int(r["queued"] or 0),
                     executing=int(r["executing"] or 0),
                     longest_wait_s=_seconds(r["db_now"], r["oldest_queued"]))]


def disk_spill(conn: psycopg.Connection, minutes: int) -> Spill:
    """How many of the last `minutes`' queries spilled to disk, and how much."""
    r = _rows(conn, _SPILL, {"minutes": minutes})[0]
    return Spill(int(r["queries"] or 0), int(r["spilled"] or 0), float(r["spilled_mb"] or 0), minutes)


# --- the task runs the flows use -------------------------------------------------------------


@dataclass
class Problem:
    """Why a check could not run: `problem` is credentials / unreachable / iam / views / other."""

    problem: str
    message: str


@dataclass
class Snapshot:
    """What one pass over a warehouse saw, and which checks could not run."""

    own_pid: int | None = None
    queries: list[RunningQuery] = field(default_factory=list)
    waits: list[LockWait] = field(default_factory=list)
    queues: list[WlmQueue] = field(default_factory=list)
    spill: Spill | None = None
    problems: dict[str, Problem] = field(default_factory=dict)


def _run_checks(
    warehouse: WarehouseConnection, checks: Sequence[tuple[str, Callable[[psycopg.Connection], Any]]]
) -> Snapshot:
    with warehouse_slots(warehouse.scope):  # one connection, counted with other runs' ones
        return _checks_on_one_connection(warehouse, checks)


def _checks_on_one_connection(
    warehouse: WarehouseConnection, checks: Sequence[tuple[str, Callable[[psycopg.Connection], Any]]]
) -> Snapshot:
    snap = Snapshot()
    try:
        conn = warehouse.connect()
    except WarehouseUnavailable as exc:
        snap.problems["connection"] = Problem(exc.problem, str(exc))
        return snap
    with conn:
        snap.own_pid = own_pid(conn)
        if warehouse.dialect == "postgres":
            checks = [("visibility", check_postgres_visibility), *checks]
        for name, check in checks:
            try:
                result = check(conn)
            except psycopg.errors.InsufficientPrivilege as exc:
                reason = " ".join(str(exc).split())
                snap.problems[name] = Problem(
                    "views", f"{warehouse.user} may not read the {name} views ({reason}): "
                             f"{ACCESS_FIX[warehouse.dialect]}.")
            except psycopg.Error as exc:
                snap.problems[name] = Problem(
                    "other", f"{name} check failed: {redact(' '.join(str(exc).split()))[:300]}")
            else:
                if result is not None:
                    setattr(snap, name, result)
    return snap


@task(name="collect-query-watch")
def collect_query_watch(warehouse: WarehouseConnection, min_query_seconds: int) -> Snapshot:
    """Long-running queries and lock waits on one warehouse (one connection, two queries)."""
    dialect = warehouse.dialect
    return _run_checks(warehouse, [
        ("queries", lambda c: running_queries(c, dialect, min_query_seconds)),
        ("waits", lambda c: lock_waits(c, dialect)),
    ])


@task(name="collect-wlm-state")
def collect_wlm_state(warehouse: WarehouseConnection, spill_minutes: int) -> Snapshot:
    """WLM queue state of one Redshift warehouse, and its queries' disk spill."""
    return _run_checks(warehouse, [("queues", lambda c: wlm_queues(c, warehouse.dialect)),
                                   ("spill", lambda c: disk_spill(c, spill_minutes))])


_SIGNAL = {"cancel": "pg_cancel_backend", "terminate": "pg_terminate_backend"}


@task(name="cancel-or-terminate")
def act_on_backends(
    warehouse: WarehouseConnection,
    plans: Sequence[PlannedAction],
    apply: bool,
    store: OpsStore,
    job: str,
    scope: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """Cancel or terminate the planned backends (only with `apply`); record every decision.

    Idempotent: a backend that is already gone is recorded as skipped. The function refuses
    the session it runs in, whatever the plan says.
    """
    log = get_run_logger()
    done: list[dict[str, Any]] = []
    conn = None
    try:
        for plan in plans:
            outcome, detail = "planned", plan.reason
            if apply:
                try:
                    conn = conn or warehouse.connect(read_only=False)
                    row = conn.execute(
                        f"select case when %(pid)s = pg_backend_pid() then null "
                        f"else {_SIGNAL[plan.action]}(%(pid)s) end as ok", {"pid": plan.pid}
                    ).fetchone()
                    ok = row[0] if row else None
                    if ok is None:
                        outcome, detail = "skipped", "refused: that is our own session"
                    else:
                        outcome = "done" if ok else "skipped"
                        detail = plan.reason if ok else "backend already gone"
                except (psycopg.Error, WarehouseUnavailable) as exc:
                    outcome, detail = "failed", redact(" ".join(str(exc).split()))[:300]
            log.info("%s %s (%s): %s — %s", plan.action, plan.resource_id, plan.user, outcome, detail)
            store.record_action(
                job, action=plan.action, resource_id=plan.resource_id, scope=scope,
                dry_run=not apply, outcome=outcome,
                detail={"pid": plan.pid, "user": plan.user, "why": plan.reason, "result": detail},
                flow_run_id=str(flow_run.id) if flow_run.id else None, now=now,
            )
            done.append({"action": plan.action, "resource": plan.resource_id, "user": plan.user,
                         "outcome": outcome, "detail": detail})
    finally:
        if conn is not None:
            conn.close()
    return done
