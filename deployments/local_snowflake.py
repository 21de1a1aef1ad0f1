"""A local Snowflake for the tests and the demo: a fakesnow server, and real connectors for it.

    with fakesnow_server() as endpoint:            # fakesnow://127.0.0.1:<port>
        with seed_connection(endpoint) as conn:
            create_account_usage(conn)
            insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.WAREHOUSE_METERING_HISTORY", [...])
        save_connector("snowflake", "acme-prod")     # key-pair credentials, as in production

The server runs in its own process (one process = one account: its in-memory databases are its
own), speaks Snowflake's HTTP protocol, and the real snowflake-connector-python talks to it.
fakesnow has no SNOWFLAKE.ACCOUNT_USAGE: `create_account_usage` creates those views as tables
with Snowflake's documented columns, for tests to fill with realistic rows. The commands
fakesnow cannot run (SHOW WAREHOUSES, SHOW RESOURCE MONITORS, the live query history table
function, SYSTEM$CANCEL_QUERY) are read from the STAND_IN tables created here (tasks/snowflake.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect_snowflake import SnowflakeConnector, SnowflakeCredentials

STARTUP_TIMEOUT_S = 120.0  # ~5 s on an idle machine; a machine shared by many test runs is slower
KEY_PASSPHRASE = "local-only-passphrase"  # encrypts a key generated per process, for the stand-in only

# SNOWFLAKE.ACCOUNT_USAGE views the jobs read, with the documented columns and types.
ACCOUNT_USAGE_TABLES = {
    "WAREHOUSE_METERING_HISTORY": """
        START_TIME TIMESTAMP_LTZ, END_TIME TIMESTAMP_LTZ, WAREHOUSE_ID NUMBER, WAREHOUSE_NAME VARCHAR,
        CREDITS_USED NUMBER(38,9), CREDITS_USED_COMPUTE NUMBER(38,9),
        CREDITS_USED_CLOUD_SERVICES NUMBER(38,9), CREDITS_ATTRIBUTED_COMPUTE_QUERIES NUMBER(38,9)""",
    "QUERY_ATTRIBUTION_HISTORY": """
        QUERY_ID VARCHAR, PARENT_QUERY_ID VARCHAR, ROOT_QUERY_ID VARCHAR, WAREHOUSE_ID NUMBER,
        WAREHOUSE_NAME VARCHAR, QUERY_HASH VARCHAR, QUERY_PARAMETERIZED_HASH VARCHAR, QUERY_TAG VARCHAR,
        USER_NAME VARCHAR, START_TIME TIMESTAMP_LTZ, END_TIME TIMESTAMP_LTZ,
        CREDITS_ATTRIBUTED_COMPUTE FLOAT, CREDITS_USED_QUERY_ACCELERATION FLOAT""",
    "QUERY_HISTORY": """
        QUERY_ID VARCHAR, QUERY_TEXT VARCHAR, DATABASE_NAME VARCHAR, SCHEMA_NAME VARCHAR,
        QUERY_TYPE VARCHAR, SESSION_ID NUMBER, USER_NAME VARCHAR, ROLE_NAME VARCHAR,
        WAREHOUSE_ID NUMBER, WAREHOUSE_NAME VARCHAR, WAREHOUSE_SIZE VARCHAR, WAREHOUSE_TYPE VARCHAR,
        CLUSTER_NUMBER NUMBER, QUERY_TAG VARCHAR, EXECUTION_STATUS VARCHAR, ERROR_CODE VARCHAR,
        ERROR_MESSAGE VARCHAR, START_TIME TIMESTAMP_LTZ, END_TIME TIMESTAMP_LTZ,
        TOTAL_ELAPSED_TIME NUMBER, BYTES_SCANNED NUMBER, ROWS_PRODUCED NUMBER, COMPILATION_TIME NUMBER,
        EXECUTION_TIME NUMBER, QUEUED_PROVISIONING_TIME NUMBER, QUEUED_REPAIR_TIME NUMBER,
        QUEUED_OVERLOAD_TIME NUMBER, TRANSACTION_BLOCKED_TIME NUMBER,
        CREDITS_USED_CLOUD_SERVICES NUMBER(38,9), TRANSACTION_ID NUMBER""",
    "LOCK_WAIT_HISTORY": """
        OBJECT_ID NUMBER, LOCK_TYPE VARCHAR, OBJECT_NAME VARCHAR, SCHEMA_ID NUMBER, SCHEMA_NAME VARCHAR,
        DATABASE_ID NUMBER, DATABASE_NAME VARCHAR, QUERY_ID VARCHAR, TRANSACTION_ID NUMBER,
        REQUESTED_AT TIMESTAMP_LTZ, ACQUIRED_AT TIMESTAMP_LTZ, BLOCKER_QUERIES VARIANT""",
    "WAREHOUSE_LOAD_HISTORY": """
        START_TIME TIMESTAMP_LTZ, END_TIME TIMESTAMP_LTZ, WAREHOUSE_ID NUMBER, WAREHOUSE_NAME VARCHAR,
        AVG_RUNNING NUMBER(38,9), AVG_QUEUED_LOAD NUMBER(38,9), AVG_QUEUED_PROVISIONING NUMBER(38,9),
        AVG_BLOCKED NUMBER(38,9)""",
    "GRANTS_TO_USERS": """
        CREATED_ON TIMESTAMP_LTZ, DELETED_ON TIMESTAMP_LTZ, ROLE VARCHAR, GRANTED_TO VARCHAR,
        GRANTEE_NAME VARCHAR, GRANTED_BY VARCHAR""",
    "GRANTS_TO_ROLES": """
        CREATED_ON TIMESTAMP_LTZ, MODIFIED_ON TIMESTAMP_LTZ, PRIVILEGE VARCHAR, GRANTED_ON VARCHAR,
        NAME VARCHAR, TABLE_CATALOG VARCHAR, TABLE_SCHEMA VARCHAR, GRANTED_TO VARCHAR, GRANTEE_NAME VARCHAR,
        GRANT_OPTION VARCHAR, GRANTED_BY VARCHAR, DELETED_ON TIMESTAMP_LTZ, GRANTED_BY_ROLE_TYPE VARCHAR,
        OBJECT_INSTANCE VARCHAR""",
    "USERS": """
        USER_ID NUMBER, NAME VARCHAR, CREATED_ON TIMESTAMP_LTZ, DELETED_ON TIMESTAMP_LTZ, LOGIN_NAME VARCHAR,
        DISPLAY_NAME VARCHAR, EMAIL VARCHAR, MUST_CHANGE_PASSWORD BOOLEAN, HAS_PASSWORD BOOLEAN,
        COMMENT VARCHAR, DISABLED VARCHAR, SNOWFLAKE_LOCK VARCHAR, DEFAULT_WAREHOUSE VARCHAR,
        DEFAULT_ROLE VARCHAR, EXT_AUTHN_DUO BOOLEAN, EXT_AUTHN_UID VARCHAR, HAS_MFA BOOLEAN,
        LAST_SUCCESS_LOGIN TIMESTAMP_LTZ, HAS_RSA_PUBLIC_KEY BOOLEAN, PASSWORD_LAST_SET_TIME TIMESTAMP_LTZ,
        OWNER VARCHAR, TYPE VARCHAR""",
    "ROLES": """
        ROLE_ID NUMBER, CREATED_ON TIMESTAMP_LTZ, DELETED_ON TIMESTAMP_LTZ, NAME VARCHAR, COMMENT VARCHAR,
        OWNER VARCHAR, ROLE_TYPE VARCHAR, ROLE_DATABASE_NAME VARCHAR, ROLE_INSTANCE_ID NUMBER,
        OWNER_ROLE_TYPE VARCHAR""",
}
# The output columns of the commands fakesnow cannot run (see tasks/snowflake.py: STAND_IN).
STAND_IN_TABLES = {
    "SHOW_WAREHOUSES": """
        "name" VARCHAR, "state" VARCHAR, "type" VARCHAR, "size" VARCHAR, "min_cluster_count" NUMBER,
        "max_cluster_count" NUMBER, "started_clusters" NUMBER, "running" NUMBER, "queued" NUMBER,
        "is_default" VARCHAR, "is_current" VARCHAR, "auto_suspend" NUMBER, "auto_resume" VARCHAR,
        "available" VARCHAR, "provisioning" VARCHAR, "quiescing" VARCHAR, "other" VARCHAR,
        "created_on" TIMESTAMP_LTZ, "resumed_on" TIMESTAMP_LTZ, "updated_on" TIMESTAMP_LTZ,
        "owner" VARCHAR, "comment" VARCHAR, "enable_query_acceleration" VARCHAR,
        "query_acceleration_max_scale_factor" NUMBER, "resource_monitor" VARCHAR,
        "scaling_policy" VARCHAR""",
    "SHOW_RESOURCE_MONITORS": """
        "name" VARCHAR, "credit_quota" NUMBER(38,2), "used_credits" NUMBER(38,2),
        "remaining_credits" NUMBER(38,2), "level" VARCHAR, "frequency" VARCHAR,
        "start_time" TIMESTAMP_LTZ, "end_time" TIMESTAMP_LTZ, "notify_at" VARCHAR, "suspend_at" VARCHAR,
        "suspend_immediately_at" VARCHAR, "created_on" TIMESTAMP_LTZ, "owner" VARCHAR,
        "comment" VARCHAR, "notify_users" VARCHAR""",
    "QUERY_HISTORY_LIVE": """
        QUERY_ID VARCHAR, QUERY_TEXT VARCHAR, SESSION_ID NUMBER, USER_NAME VARCHAR, ROLE_NAME VARCHAR,
        WAREHOUSE_NAME VARCHAR, WAREHOUSE_SIZE VARCHAR, EXECUTION_STATUS VARCHAR,
        START_TIME TIMESTAMP_LTZ, TOTAL_ELAPSED_TIME NUMBER, TRANSACTION_BLOCKED_TIME NUMBER,
        QUERY_TAG VARCHAR""",
    "CANCELLED_QUERIES": "QUERY_ID VARCHAR",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def fakesnow_server() -> Iterator[str]:
    """A fakesnow server in its own process, in memory; yields its `fakesnow://` endpoint."""
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"fakesnow did not start: {log.read().decode()[-2000:]}") from None
                    time.sleep(0.2)
            yield f"fakesnow://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def seed_connection(endpoint: str) -> Iterator[Any]:
    """A plain connector connection to the local server, for seeding."""
    import snowflake.connector

    parts = urlsplit(endpoint)
    conn = snowflake.connector.connect(
        account="seed", user="seed", password="seed", host=parts.hostname, port=parts.port, protocol="http",
        database="SNOWFLAKE", schema="ACCOUNT_USAGE", network_timeout=30,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False})
    try:
        yield conn
    finally:
        conn.close()


def create_account_usage(conn: Any, views: Sequence[str] | None = None) -> None:
    """SNOWFLAKE.ACCOUNT_USAGE views (all, or `views`) as empty tables, and the STAND_IN tables."""
    cur = conn.cursor()
    cur.execute("CREATE DATABASE IF NOT EXISTS SNOWFLAKE")
    cur.execute("CREATE SCHEMA IF NOT EXISTS SNOWFLAKE.ACCOUNT_USAGE")
    for view, columns in ACCOUNT_USAGE_TABLES.items():
        if views is None or view in views:
            cur.execute(f"CREATE OR REPLACE TABLE SNOWFLAKE.ACCOUNT_USAGE.{view} ({columns})")
    cur.execute("CREATE DATABASE IF NOT EXISTS STAND_IN")
    cur.execute("CREATE SCHEMA IF NOT EXISTS STAND_IN.PUBLIC")
    for table, columns in STAND_IN_TABLES.items():
        cur.execute(f"CREATE OR REPLACE TABLE STAND_IN.PUBLIC.{table} ({columns})")


def insert_rows(conn: Any, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert dict rows (keys are column names; quoted when lower case, as SHOW output is)."""
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' if c != c.upper() else c for c in columns)
    values = ", ".join(f"%({c})s" for c in columns)
    conn.cursor().executemany(f"INSERT INTO {table} ({names}) VALUES ({values})", [dict(r) for r in rows])


@lru_cache(maxsize=1)
def private_key_pem() -> str:
    """An encrypted RSA key made for this process: key-pair auth as in production, never a real key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(KEY_PASSPHRASE.encode())).decode()


def save_connector(name: str, account: str, *, user: str = "DATAPLATFORM_OPS", role: str = "OPS_MONITOR",
                   warehouse: str = "OPS_WH", passphrase: str = KEY_PASSPHRASE,
                   private_key: str | None = None) -> str:
    """Save a SnowflakeConnector block with key-pair credentials (as production uses); its name."""
    SnowflakeConnector(
        credentials=SnowflakeCredentials(account=account, user=user, role=role, authenticator="snowflake_jwt",
                                         private_key=private_key or private_key_pem(),
                                         private_key_passphrase=passphrase),
        database="SNOWFLAKE", schema="ACCOUNT_USAGE", warehouse=warehouse,
    ).save(name, overwrite=True)
    return name



def seed_usage(conn: Any, day: date) -> None:
    """A realistic day of one account's ACCOUNT_USAGE (the demo and the dashboards test):
    ETL_WH (Medium) attributed to two users, BI_WH (X-Small) not attributed yet (estimated),
    cloud services above 10 % of compute, and an X-Large query worth announcing."""
    t0 = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)

    def at(hour: int, minute: int = 0) -> datetime:
        return t0 + timedelta(hours=hour, minutes=minute)

    def meter(warehouse: str, start: datetime, compute: float, services: float) -> dict[str, Any]:
        return {"START_TIME": start, "END_TIME": start + timedelta(hours=1), "WAREHOUSE_ID": len(warehouse),
                "WAREHOUSE_NAME": warehouse, "CREDITS_USED": compute + services, "CREDITS_USED_COMPUTE": compute,
                "CREDITS_USED_CLOUD_SERVICES": services, "CREDITS_ATTRIBUTED_COMPUTE_QUERIES": None}

    def attributed(query_id: str, warehouse: str, user: str, start: datetime, credits: float) -> dict[str, Any]:
        return {"QUERY_ID": query_id, "PARENT_QUERY_ID": None, "ROOT_QUERY_ID": None, "WAREHOUSE_ID": 1,
                "WAREHOUSE_NAME": warehouse, "QUERY_HASH": query_id, "QUERY_PARAMETERIZED_HASH": query_id,
                "QUERY_TAG": "", "USER_NAME": user, "START_TIME": start, "END_TIME": start + timedelta(minutes=5),
                "CREDITS_ATTRIBUTED_COMPUTE": credits, "CREDITS_USED_QUERY_ACCELERATION": None}

    def executed(query_id: str, warehouse: str, size: str, user: str, start: datetime, minutes: float,
                 text: str) -> dict[str, Any]:
        ms = int(minutes * 60_000)
        return {"QUERY_ID": query_id, "QUERY_TEXT": text, "DATABASE_NAME": "ANALYTICS", "SCHEMA_NAME": "PUBLIC",
                "QUERY_TYPE": "SELECT", "SESSION_ID": 1, "USER_NAME": user, "ROLE_NAME": "ANALYST",
                "WAREHOUSE_ID": 1, "WAREHOUSE_NAME": warehouse, "WAREHOUSE_SIZE": size,
                "WAREHOUSE_TYPE": "STANDARD", "CLUSTER_NUMBER": 1, "QUERY_TAG": "", "EXECUTION_STATUS": "SUCCESS",
                "ERROR_CODE": None, "ERROR_MESSAGE": None, "START_TIME": start,
                "END_TIME": start + timedelta(milliseconds=ms), "TOTAL_ELAPSED_TIME": ms, "BYTES_SCANNED": 10**9,
                "ROWS_PRODUCED": 1000, "COMPILATION_TIME": 300, "EXECUTION_TIME": ms,
                "QUEUED_PROVISIONING_TIME": 0, "QUEUED_REPAIR_TIME": 0, "QUEUED_OVERLOAD_TIME": 0,
                "TRANSACTION_BLOCKED_TIME": 0, "CREDITS_USED_CLOUD_SERVICES": 0.01, "TRANSACTION_ID": 1}

    insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.WAREHOUSE_METERING_HISTORY", [
        meter("ETL_WH", at(1), 4.0, 0.6), meter("ETL_WH", at(2), 2.0, 0.4),
        meter("BI_WH", at(9), 1.0, 0.3), meter("BI_WH", at(10), 1.0, 0.1), meter("REPORTING_WH", at(11), 16.0, 0.2)])
    insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.QUERY_ATTRIBUTION_HISTORY", [
        attributed("etl-1", "ETL_WH", "ALICE", at(1, 5), 3.0), attributed("etl-2", "ETL_WH", "BOB", at(2, 10), 1.5)])
    insert_rows(conn, "SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY", [
        executed("etl-1", "ETL_WH", "Medium", "ALICE", at(1, 5), 45, "MERGE INTO marts.orders USING raw.orders ON id = 1"),
        executed("etl-2", "ETL_WH", "Medium", "BOB", at(2, 10), 22, "INSERT INTO marts.daily SELECT 1"),
        executed("bi-1", "BI_WH", "X-Small", "CAROL", at(9, 0), 40, "SELECT region, sum(amount) FROM sales GROUP BY 1"),
        executed("rep-1", "REPORTING_WH", "X-Large", "DAVE", at(11, 0), 50,
                 "SELECT * FROM events e JOIN sessions s ON s.id = e.session_id WHERE e.day > '2026-01-01'"),
    ])
