"""A PostgreSQL source that drops the connection mid-check: that table is retried once on a
fresh connection and reported; the other tables are not affected."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg

from rules.integrity import TableError
from tasks.measure import _postgres_error, _run_pooled


def _pool(pg_dsn: str, kill: int):
    """Connections to the real server; the first `kill` are terminated by the server."""
    opened: list[psycopg.Connection] = []

    def open_conn() -> psycopg.Connection:
        conn = psycopg.connect(pg_dsn, autocommit=True)
        if len(opened) < kill:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute("select pg_terminate_backend(%s)", (conn.info.backend_pid,))
        opened.append(conn)
        return conn

    return open_conn, opened


def _measure(conn: psycopg.Connection, q) -> int:
    return conn.execute("select count(*) from generate_series(1, %s)", (q.rows,)).fetchone()[0]


def _run(pg_dsn: str, kill: int, queries):
    open_conn, opened = _pool(pg_dsn, kill)
    result = _run_pooled(queries, 1, open_conn, _measure, classify=_postgres_error,
                         close=lambda c: c.close(), usable=lambda c: not c.closed and not c.broken)
    return result, opened


def test_dropped_connection_is_retried_once_and_the_rest_complete(pg_dsn):
    queries = [SimpleNamespace(id="orders", rows=5), SimpleNamespace(id="events", rows=7)]
    result, opened = _run(pg_dsn, kill=1, queries=queries)
    assert result == {"orders": 5, "events": 7}
    assert len(opened) == 2  # the dropped one and its replacement


def test_a_second_drop_is_reported_not_retried_forever(pg_dsn):
    result, opened = _run(pg_dsn, kill=2, queries=[SimpleNamespace(id="orders", rows=5)])
    [error] = result.values()
    assert isinstance(error, TableError) and "connection lost; one retry failed" in error.message
    assert len(opened) == 2
