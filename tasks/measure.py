"""Measure tables for the integrity check: one query per table, tables in parallel per connection.

Each query returns, per day of the table's `day_column` (or once for the whole table): the
row count, the newest freshness timestamp and two sums of 32-bit slices of an MD5 per row
(an order-independent checksum computed in the database). Names are quoted by the driver
(`psycopg.sql.Identifier`) or, on BigQuery and Snowflake, checked against their naming rules
(then backquoted on BigQuery, left unquoted on Snowflake so they resolve as Snowflake resolves them);
the only SQL text taken verbatim is a side's `filter`, which comes from the pipelines file.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime, time, timezone
from typing import Any, TypeVar

import psycopg
from google.cloud import bigquery
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from snowflake.connector.errors import Error as SnowflakeError

from blocks.warehouse import WarehouseConnection
from rules.integrity import Measured, TableError, TableMeasurement, TableQuery
from rules.snowflake import access_problem
from tasks.limits import warehouse_slots
from tasks.snowflake import USE_WAREHOUSE, SnowflakeAccount, connect_kwargs, grants

C = TypeVar("C")

# A row is hashed as its columns' text joined by U+001F, NULL written as U+001E, on both
# engines (code points, not escapes: string escapes differ between engines).


def _as_utc(value: Any) -> datetime | None:
    """A freshness maximum as an aware UTC datetime (naive timestamps are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc)
    raise TypeError(f"freshness column returned {type(value).__name__}, not a date or timestamp")


def _fold(rows: Sequence[tuple[Any, int, Any, Any, Any]], checksum: bool) -> TableMeasurement:
    """Per-day rows (day, count, latest, hi, lo) -> one measurement with totals."""
    by_day: dict[str, int] = {}
    sums: dict[str, int] = {}
    latest = None
    total = hi_total = lo_total = 0
    for day, count, newest, hi, lo in rows:
        total += int(count)
        newest = _as_utc(newest)
        if newest is not None and (latest is None or newest > latest):
            latest = newest
        hi_total += int(hi or 0)
        lo_total += int(lo or 0)
        if day is not None:
            key = day.isoformat()
            by_day[key] = int(count)
            sums[key] = (int(hi or 0) << 64) | int(lo or 0)
    return TableMeasurement(
        count=total,
        latest=latest,
        by_day=by_day,
        checksum=((hi_total << 64) | lo_total) if checksum else None,
        checksum_by_day=sums if checksum else {},
    )


def _run_pooled(
    queries: Sequence[TableQuery],
    bound: int,
    open_conn: Callable[[], C],
    measure: Callable[[C, TableQuery], TableMeasurement],
    classify: Callable[[Exception], TableError],
    close: Callable[[C], None] = lambda c: None,
    usable: Callable[[C], bool] = lambda c: True,
) -> dict[str, Measured]:
    """Measure `queries` on at most `bound` connections at once; one failure stays one table's."""
    if not queries:
        return {}
    try:
        first = open_conn()  # one failed connect is every table's answer, not N timeouts
    except Exception as exc:
        error = classify(exc)
        return {q.id: error for q in queries}
    idle: queue.SimpleQueue[C] = queue.SimpleQueue()
    idle.put(first)
    opened = [first]

    def one(q: TableQuery) -> Measured:
        try:
            conn = idle.get_nowait()
        except queue.Empty:
            try:
                conn = open_conn()
            except Exception as exc:
                return classify(exc)
            opened.append(conn)
        try:
            return measure(conn, q)
        except Exception as exc:
            if usable(conn):
                return classify(exc)
            # The connection itself died (server restart, network, killed backend): one retry
            # on a fresh connection, so a blip does not fail the check.
            try:
                conn = open_conn()
                opened.append(conn)
                result = measure(conn, q)
            except Exception as retry_exc:
                error = classify(retry_exc)
                return replace(error, message=f"{error.message} (connection lost; one retry failed)")
            logging.getLogger(__name__).warning("%s: connection lost, measured on retry", q.id)
            return result
        finally:
            if usable(conn):
                idle.put(conn)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(bound, len(queries)))) as pool:
            return dict(zip([q.id for q in queries], pool.map(one, queries), strict=True))
    finally:
        for conn in opened:
            close(conn)


# --- PostgreSQL family ------------------------------------------------------------------


# The two 32-bit slices of each row's MD5, summed. Redshift has no bit type but has strtol.
_HASH_SUMS_POSTGRES = (
    "sum(('x' || substr(dpo_hash, 1, 8))::bit(32)::bigint), "
    "sum(('x' || substr(dpo_hash, 9, 8))::bit(32)::bigint)"
)
_HASH_SUMS_REDSHIFT = (
    "sum(strtol(substring(dpo_hash, 1, 8), 16)), sum(strtol(substring(dpo_hash, 9, 8), 16))"
)


def _row_text(columns: Sequence[str], dialect: str) -> sql.Composable:
    # Redshift's `text` is varchar(256) and it has no concat_ws: spell both out.
    cast = sql.SQL("text" if dialect == "postgres" else "varchar(65535)")
    parts = [sql.SQL("coalesce({}::{}, chr(30))").format(sql.Identifier(c), cast) for c in columns]
    return sql.SQL(" || chr(31) || ").join(parts)


def postgres_query(q: TableQuery, dialect: str = "postgres") -> tuple[sql.Composed, dict[str, Any]]:
    """The one statement that measures a PostgreSQL/Redshift table, and its parameters."""
    side = q.side
    table = sql.Identifier(*side.table_parts)
    day = sql.Identifier(side.day_column) if side.day_column else None
    fresh = sql.Identifier(side.freshness_column) if side.freshness_column else None
    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if side.filter:
        # `%` in the filter is literal text, not a parameter placeholder.
        conditions.append(sql.SQL("({})").format(sql.SQL(side.filter.replace("%", "%%"))))
    if q.window_start is not None and day is not None:
        conditions.append(sql.SQL("{} >= %(window_start)s").format(day))
        params["window_start"] = q.window_start
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    day_expr = sql.SQL("{}::date").format(day) if day else sql.SQL("NULL::date")
    fresh_expr = sql.SQL("max({})").format(fresh) if fresh else sql.SQL("NULL")
    if q.checksum_columns:
        source = sql.SQL("(SELECT *, md5({}) AS dpo_hash FROM {}{}) AS t").format(
            _row_text(q.checksum_columns, dialect), table, where)
        where = sql.SQL("")
        sums = sql.SQL(_HASH_SUMS_POSTGRES if dialect == "postgres" else _HASH_SUMS_REDSHIFT)
    else:
        source = table
        sums = sql.SQL("NULL, NULL")
    group = sql.SQL(" GROUP BY 1") if day else sql.SQL("")
    query = sql.SQL("SELECT {} AS day, count(*), {}, {} FROM {}{}{}").format(
        day_expr, fresh_expr, sums, source, where, group)
    return query, params


def _postgres_error(exc: Exception) -> TableError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TableError(text, missing=isinstance(exc, psycopg.errors.UndefinedTable),
                      broken=isinstance(exc, (psycopg.errors.UndefinedColumn, psycopg.errors.SyntaxError,
                                              psycopg.errors.DatatypeMismatch)))


def _open_postgres(connection: WarehouseConnection) -> psycopg.Connection:
    conn = connection.connect()
    conn.execute("SET timezone TO 'UTC'")  # days and text renderings of timestamps in UTC
    return conn


def _measure_postgres_one(
    conn: psycopg.Connection, q: TableQuery, dialect: str = "postgres"
) -> TableMeasurement:
    query, params = postgres_query(q, dialect)
    rows = conn.execute(query, params).fetchall()
    return _fold(rows, bool(q.checksum_columns))


@task(name="measure-postgres-tables", cache_policy=NO_CACHE)
def measure_postgres_tables(
    connection: WarehouseConnection, queries: Sequence[TableQuery], max_concurrency: int = 4
) -> dict[str, Measured]:
    """Measure every table of one PostgreSQL-family connection, `max_concurrency` at a time
    (fewer if the warehouse's concurrency limit is lower)."""
    with warehouse_slots(connection.scope, max_concurrency) as granted:
        return _run_pooled(
            queries, granted,
            open_conn=lambda: _open_postgres(connection),
            measure=lambda conn, q: _measure_postgres_one(conn, q, connection.dialect),
            classify=_postgres_error,
            close=lambda c: c.close(),
            usable=lambda c: not c.closed and not c.broken,
        )


# --- BigQuery -----------------------------------------------------------------------------


def _bq(name: str) -> str:
    # Names were checked against BigQuery's naming rules when the config was validated.
    return f"`{name}`"


def bigquery_query(q: TableQuery) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
    """The one statement that measures a BigQuery table, and its parameters."""
    side = q.side
    conditions = [f"({side.filter})"] if side.filter else []
    params = []
    day = f"DATE({_bq(side.day_column)})" if side.day_column else None
    if q.window_start is not None and day:
        conditions.append(f"{day} >= @window_start")
        params.append(bigquery.ScalarQueryParameter("window_start", "DATE", q.window_start))
    fresh = f"MAX({_bq(side.freshness_column)})" if side.freshness_column else "NULL"
    if q.checksum_columns:
        texts = ", ".join(f"COALESCE(CAST({_bq(c)} AS STRING), CODE_POINTS_TO_STRING([30]))"
                          for c in q.checksum_columns)
        hashed = f"TO_HEX(MD5(ARRAY_TO_STRING([{texts}], CODE_POINTS_TO_STRING([31]))))"
        sums = ", ".join(
            f"SUM(CAST(CONCAT('0x', SUBSTR({hashed}, {start}, 8)) AS INT64))" for start in (1, 9)
        )
    else:
        sums = "NULL, NULL"
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    group = " GROUP BY day" if day else ""
    text = (f"SELECT {day or 'NULL'} AS day, COUNT(*) AS n, {fresh} AS latest, {sums} "
            f"FROM {_bq('.'.join(side.table_parts))}{where}{group}")
    return text, params


def _bigquery_error(exc: Exception) -> TableError:
    from google.api_core.exceptions import BadRequest, NotFound

    message = str(getattr(exc, "message", None) or exc).strip() or type(exc).__name__
    # BadRequest: the query as declared cannot run (an unknown column, a bad filter).
    return TableError(message.splitlines()[0], missing=isinstance(exc, NotFound), broken=isinstance(exc, BadRequest))


def _measure_bigquery_one(client: bigquery.Client, q: TableQuery) -> TableMeasurement:
    text, params = bigquery_query(q)
    job = client.query(text, job_config=bigquery.QueryJobConfig(query_parameters=params))
    rows = [tuple(r.values()) for r in job.result()]
    return _fold(rows, bool(q.checksum_columns))


@task(name="measure-bigquery-tables", cache_policy=NO_CACHE)
def measure_bigquery_tables(
    client: bigquery.Client, queries: Sequence[TableQuery], max_concurrency: int = 4
) -> dict[str, Measured]:
    """Measure every table read through one BigQuery client, `max_concurrency` at a time."""
    return _run_pooled(queries, max_concurrency, open_conn=lambda: client,
                       measure=_measure_bigquery_one, classify=_bigquery_error)


# --- Snowflake ----------------------------------------------------------------------------

# Snowflake's hex parser (TO_NUMBER(x, 'XXXXXXXX')) is not in every emulator: each 32-bit slice
# of the MD5 is summed digit by digit instead; the same numbers as the other engines.
_HEX_DIGITS = "'0123456789abcdef'"
SELECT_TABLES = "SELECT ON TABLE <each pipeline table>"
USE_DATABASES = "USAGE ON DATABASE <each pipeline table's database>"
USE_SCHEMAS = "USAGE ON SCHEMA <each pipeline table's schema>"


def _hex_slice(start: int) -> str:
    return " + ".join(f"(POSITION(SUBSTR(dpo_hash, {start + i}, 1), {_HEX_DIGITS}) - 1) * {16 ** (7 - i)}"
                      for i in range(8))


def snowflake_query(q: TableQuery) -> tuple[str, dict[str, Any]]:
    """The one statement that measures a Snowflake table, and its parameters (pyformat)."""
    side = q.side
    table = ".".join(side.table_parts)  # checked unquoted names (rules/integrity.py)
    conditions = [f"({side.filter.replace('%', '%%')})"] if side.filter else []
    params: dict[str, Any] = {}
    day = f"TO_DATE({side.day_column})" if side.day_column else None
    if q.window_start is not None and day:
        conditions.append(f"{day} >= %(window_start)s")
        params["window_start"] = q.window_start
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    fresh = f"MAX({side.freshness_column})" if side.freshness_column else "NULL"
    if q.checksum_columns:
        text = " || CHR(31) || ".join(f"COALESCE(TO_VARCHAR({c}), CHR(30))" for c in q.checksum_columns)
        source = f"(SELECT *, MD5({text}) AS dpo_hash FROM {table}{where}) t"
        where = ""
        sums = f"SUM({_hex_slice(1)}), SUM({_hex_slice(9)})"
    else:
        source = table
        sums = "NULL, NULL"
    group = " GROUP BY 1" if day else ""
    return f"SELECT {day or 'NULL::DATE'} AS day, COUNT(*), {fresh}, {sums} FROM {source}{where}{group}", params


def _snowflake_error(account: SnowflakeAccount) -> Callable[[Exception], TableError]:
    def classify(exc: Exception) -> TableError:
        if not isinstance(exc, SnowflakeError):
            return TableError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        # 2003: "does not exist or not authorized"; Snowflake does not say which.
        missing = exc.errno == 2003 or exc.sqlstate == "42S02"
        if missing:
            return TableError(f"{(exc.msg or '').splitlines()[0]} (or role {account.role or '<role>'} may not "
                              f"see it: GRANT {SELECT_TABLES}, {USE_SCHEMAS}, {USE_DATABASES})", missing=True)
        problem = access_problem(account.account, account.role, "the table", errno=exc.errno, sqlstate=exc.sqlstate,
                                 message=exc.msg or "", error_type=type(exc).__name__, grant=SELECT_TABLES)
        # 904 invalid identifier, 1003 syntax error: the declared check cannot run as written.
        return TableError(problem.message, broken=exc.errno in (904, 1003))
    return classify


def _measure_snowflake_one(conn: Any, q: TableQuery) -> TableMeasurement:
    text, params = snowflake_query(q)
    with conn.cursor() as cursor:
        rows = cursor.execute(text, params).fetchall()
    return _fold(rows, bool(q.checksum_columns))


@task(name="measure-snowflake-tables", cache_policy=NO_CACHE)
@grants(SELECT_TABLES, USE_SCHEMAS, USE_DATABASES, USE_WAREHOUSE)
def measure_snowflake_tables(
    account: SnowflakeAccount, queries: Sequence[TableQuery], max_concurrency: int = 4, login_timeout: int = 60
) -> dict[str, Measured]:
    """Measure every table of one Snowflake account (connector block), `max_concurrency` at a time,
    each on its own connection made by the block's credentials."""
    connector = account.connector

    def open_conn() -> Any:
        return connector.credentials.get_client(
            **connect_kwargs(account, login_timeout), database=connector.database,
            warehouse=connector.warehouse, schema=connector.schema_)

    return _run_pooled(queries, max_concurrency, open_conn=open_conn, measure=_measure_snowflake_one,
                       classify=_snowflake_error(account), close=lambda c: c.close(),
                       usable=lambda c: not c.is_closed())
