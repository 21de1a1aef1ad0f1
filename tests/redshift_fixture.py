"""Helpers for the warehouse tests: the Redshift system-view fixture schema, real sessions
that sleep or hold locks on the real PostgreSQL, and WarehouseConnection blocks for them."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from blocks.warehouse import WarehouseConnection

VIEWS_SQL = Path(__file__).resolve().parent.parent / "deployments" / "redshift_views.sql"


def load_redshift_views(dsn: str) -> None:
    """Create the Redshift system views and shims (deployments/redshift_views.sql) in this database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(VIEWS_SQL.read_text())


def warehouse_block(dsn: str, dialect: str = "postgres", save: bool = True, **overrides) -> WarehouseConnection:
    """A WarehouseConnection to the database of `dsn`, saved under a unique name."""
    p = conninfo_to_dict(dsn)
    fields = dict(dialect=dialect, host=p.get("host", "127.0.0.1"), port=int(p.get("port", 5432)),
                  database=p["dbname"], user=p.get("user", "postgres"),
                  password=p.get("password"), statement_timeout_seconds=10, connect_timeout_seconds=3)
    block = WarehouseConnection(**{**fields, **overrides})
    if save:
        block.save(f"wh-{uuid.uuid4().hex[:8]}")
    return block


def wait_until(predicate, timeout: float = 15.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


class Session(threading.Thread):
    """A real client session running one statement in a thread; records how it ended."""

    def __init__(self, dsn: str, sql: str, setup: str | None = None) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.pid = self.conn.info.backend_pid
        if setup:
            self.conn.execute(setup)
        self.sql = sql
        self.error: Exception | None = None
        self.finished = False

    def run(self) -> None:
        try:
            self.conn.execute(self.sql)
            self.finished = True
        except psycopg.Error as exc:
            self.error = exc
        finally:
            self.conn.close()


def active_for(dsn: str, pid: int, seconds: float) -> bool:
    """True once `pid` has run its current statement (or waited) for `seconds`."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select extract(epoch from now() - query_start) from pg_stat_activity "
            "where pid = %s and state = 'active'", (pid,)).fetchone()
    return bool(row) and row[0] >= seconds


class LockConflict:
    """One transaction holds LOCK TABLE orders (ACCESS EXCLUSIVE); another session waits to read."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __enter__(self) -> LockConflict:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute("create table if not exists orders (id int, note text)")
        self.holder = psycopg.connect(self.dsn)  # not autocommit: the transaction stays open
        self.blocker_pid = self.holder.info.backend_pid
        self.holder.execute("lock table orders in access exclusive mode")
        self.waiter = Session(self.dsn, "select count(*) from orders where note = 'secret'")
        self.waiter_pid = self.waiter.pid
        self.waiter.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.holder.rollback()
            self.holder.close()
        except psycopg.Error:
            pass
        self.waiter.join(timeout=10)
