-- Amazon Redshift system views reproduced on PostgreSQL, for tests of the Redshift dialects.
--
-- Column names, order and types come from the AWS documentation (Amazon Redshift Database
-- Developer Guide, "System tables and views reference"): STV_RECENTS, STV_INFLIGHT, STV_LOCKS,
-- SVV_TRANSACTIONS, STV_WLM_QUERY_STATE, STV_WLM_SERVICE_CLASS_CONFIG (a subset of its
-- columns), SYS_QUERY_HISTORY (the columns up to query_text) and SYS_SESSION_HISTORY (a
-- subset). Where PostgreSQL has the same facts (sessions, locks) the views read them live
-- from pg_stat_activity and pg_locks of the current database, so a real pg_sleep or a real
-- LOCK TABLE shows up exactly as on a cluster; WLM state has no PostgreSQL equivalent and is
-- a plain table the tests fill. Timestamps are UTC without time zone, as Redshift's are.
--
-- Shims for Redshift functions our SQL uses: getdate(), dateadd(), datediff().

create function getdate() returns timestamp language sql stable
as $$ select (now() at time zone 'utc')::timestamp(0) $$;

create function dateadd(datepart text, n integer, ts timestamp) returns timestamp
language sql immutable as $$ select ts + (n || ' ' || datepart)::interval $$;

create function datediff(datepart text, a timestamp, b timestamp) returns bigint
language sql immutable as $$
  select case lower(datepart)
    when 'microsecond' then (extract(epoch from b - a) * 1000000)::bigint
    when 'second' then floor(extract(epoch from b - a))::bigint
    when 'minute' then floor(extract(epoch from b - a) / 60)::bigint
    when 'hour' then floor(extract(epoch from b - a) / 3600)::bigint
    else floor(extract(epoch from b - a) / 86400)::bigint end $$;

create view _sessions as
select a.*, (a.query_start at time zone 'utc')::timestamp as query_start_utc,
       (a.xact_start at time zone 'utc')::timestamp as xact_start_utc,
       (a.backend_start at time zone 'utc')::timestamp as backend_start_utc
from pg_stat_activity a
where a.backend_type = 'client backend' and a.datname = current_database();

-- STV_RECENTS: userid integer, status character(20), starttime timestamp, duration integer,
-- user_name character(50), db_name character(50), query character(600), pid integer.
create view stv_recents as
select s.usesysid::integer as userid,
       (case when s.state = 'active' then 'Running' else 'Done' end)::character(20) as status,
       s.query_start_utc as starttime,
       least(extract(epoch from now() - s.query_start) * 1000000, 2147483647)::integer as duration,
       s.usename::character(50) as user_name, s.datname::character(50) as db_name,
       left(s.query, 600)::character(600) as query,
       case when s.state = 'active' then s.pid else -1 end as pid
from _sessions s;

-- STV_INFLIGHT: userid integer, slice integer, query integer, label character(320), xid bigint,
-- pid integer, starttime timestamp, text character(100), suspended integer,
-- insert_pristine integer, concurrency_scaling_status integer.
-- Emulation: one running query per session, its query id is the session's pid.
create view stv_inflight as
select s.usesysid::integer as userid, 0 as slice, s.pid as query,
       'default'::character(320) as label, coalesce(s.backend_xid::text::bigint, 0) as xid,
       s.pid, s.query_start_utc as starttime, left(s.query, 100)::character(100) as text,
       0 as suspended, 0 as insert_pristine, 0 as concurrency_scaling_status
from _sessions s where s.state = 'active';

-- SVV_TRANSACTIONS: txn_owner text, txn_db text, xid bigint, pid integer, txn_start timestamp,
-- lock_mode text, lockable_object_type text, relation integer, granted boolean.
create view svv_transactions as
select s.usename::text as txn_owner, s.datname::text as txn_db,
       coalesce(s.backend_xid::text::bigint, 0) as xid, l.pid, s.xact_start_utc as txn_start,
       l.mode::text as lock_mode, l.locktype::text as lockable_object_type,
       l.relation::integer as relation, l.granted
from pg_locks l join _sessions s on s.pid = l.pid
where l.locktype in ('relation', 'transactionid')
  and (l.database is null or l.database = (select oid from pg_database where datname = current_database()));

-- STV_LOCKS: table_id bigint, last_commit timestamp, last_update timestamp, lock_owner bigint,
-- lock_owner_pid bigint, lock_owner_start_ts timestamp, lock_owner_end_ts timestamp,
-- lock_status character varying(22).
create view stv_locks as
select l.relation::bigint as table_id, null::timestamp as last_commit, null::timestamp as last_update,
       coalesce(s.backend_xid::text::bigint, 0) as lock_owner, l.pid::bigint as lock_owner_pid,
       s.xact_start_utc as lock_owner_start_ts, null::timestamp as lock_owner_end_ts,
       (case when l.granted then 'Holding ' else 'Waiting ' end
        || case when l.mode like '%Exclusive%' then 'write lock' else 'read lock' end
       )::varchar(22) as lock_status
from pg_locks l join _sessions s on s.pid = l.pid
where l.locktype = 'relation'
  and l.database = (select oid from pg_database where datname = current_database());

-- STV_WLM_QUERY_STATE: xid integer, task integer, query integer, service_class integer,
-- slot_count integer, wlm_start_time timestamp, state character(16), queue_time bigint,
-- exec_time bigint, query_priority char(20).
create table stv_wlm_query_state (
  xid integer, task integer, query integer, service_class integer, slot_count integer,
  wlm_start_time timestamp, state character(16), queue_time bigint, exec_time bigint,
  query_priority char(20)
);

-- STV_WLM_SERVICE_CLASS_CONFIG (subset): service_class integer, queueing_strategy character(32),
-- num_query_tasks integer, target_num_query_tasks integer, evictable character(8),
-- eviction_threshold bigint, query_working_mem integer, target_query_working_mem integer,
-- min_step_mem integer, name character(64), max_execution_time bigint.
create table stv_wlm_service_class_config (
  service_class integer, queueing_strategy character(32), num_query_tasks integer,
  target_num_query_tasks integer, evictable character(8), eviction_threshold bigint,
  query_working_mem integer, target_query_working_mem integer, min_step_mem integer,
  name character(64), max_execution_time bigint
);
insert into stv_wlm_service_class_config values
  (5, 'FIFO', 1, 1, 'false', 0, 100, 100, 0, 'Superuser queue', 0),
  (6, 'FIFO', 5, 5, 'false', 0, 200, 200, 0, 'etl', 0),
  (7, 'FIFO', 5, 5, 'false', 0, 200, 200, 0, 'Default queue', 0);

-- SYS_QUERY_HISTORY: user_id integer, query_id bigint, query_label character(320),
-- transaction_id bigint, session_id integer, database_name character(128),
-- query_type character(32), status character(10), result_cache_hit boolean,
-- start_time timestamp, end_time timestamp, elapsed_time bigint (microseconds),
-- queue_time bigint, execution_time bigint, error_message character(512),
-- returned_rows bigint, returned_bytes bigint, query_text character(4000).
-- Live running queries, plus rows the tests add to sys_query_history_seed (e.g. queued ones).
create table sys_query_history_seed (
  user_id integer, query_id bigint, query_label character(320), transaction_id bigint,
  session_id integer, database_name character(128), query_type character(32),
  status character(10), result_cache_hit boolean, start_time timestamp, end_time timestamp,
  elapsed_time bigint, queue_time bigint, execution_time bigint, error_message character(512),
  returned_rows bigint, returned_bytes bigint, query_text character(4000)
);
create view sys_query_history as
select s.usesysid::integer as user_id, s.pid::bigint as query_id,
       'default'::character(320) as query_label, coalesce(s.backend_xid::text::bigint, 0) as transaction_id,
       s.pid as session_id, s.datname::character(128) as database_name,
       upper(split_part(ltrim(s.query), ' ', 1))::character(32) as query_type,
       'running'::character(10) as status, false as result_cache_hit,
       s.query_start_utc as start_time, null::timestamp as end_time,
       (extract(epoch from now() - s.query_start) * 1000000)::bigint as elapsed_time,
       0::bigint as queue_time, (extract(epoch from now() - s.query_start) * 1000000)::bigint as execution_time,
       ''::character(512) as error_message, 0::bigint as returned_rows, 0::bigint as returned_bytes,
       left(s.query, 4000)::character(4000) as query_text
from _sessions s where s.state = 'active'
union all
select * from sys_query_history_seed;

-- SYS_QUERY_DETAIL (subset): query_id bigint, step_name text, spilled_block_local_disk bigint,
-- spilled_block_remote_disk bigint (1 MB blocks a step spilled to local / remote disk).
create table sys_query_detail (
  query_id bigint, step_name text, spilled_block_local_disk bigint, spilled_block_remote_disk bigint
);

-- SYS_SESSION_HISTORY (subset): user_id integer, session_id integer,
-- database_name character(128), status character(10), start_time timestamp, end_time timestamp.
create view sys_session_history as
select s.usesysid::integer as user_id, s.pid as session_id, s.datname::character(128) as database_name,
       'active'::character(10) as status, s.backend_start_utc as start_time, null::timestamp as end_time
from _sessions s;
