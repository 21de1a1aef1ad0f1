"""data-integrity with Snowflake tables: the real snowflake-connector-python, through a
prefect-snowflake SnowflakeConnector block, against a fakesnow server; a real PostgreSQL source.

Nothing is mocked: fakesnow runs the measuring SQL (counts per day, MAX of the freshness column,
the MD5 row checksum summed in the database) on its DuckDB engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from blocks.pipelines import IntegrityPipelines
from deployments.local_snowflake import (
    fakesnow_server,
    insert_rows,
    save_connector,
    seed_connection,
)
from flows.data_integrity import data_integrity
from rules.config import ConfigError
from rules.integrity import JOB
from tests.test_integrity import save_connection

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
COLUMNS = "ID NUMBER, STATUS VARCHAR, AMOUNT_CENTS NUMBER, CREATED_AT TIMESTAMP_NTZ, LOADED_AT TIMESTAMP_NTZ"


def orders(days=(1, 2, 3), per_day=20, loaded_minutes_ago=20) -> list[dict]:
    """Rows of an orders table; timestamps in UTC (naive, as TIMESTAMP_NTZ keeps them)."""
    base = NOW.replace(tzinfo=None)
    return [{"ID": d * 1000 + i, "STATUS": "paid" if i % 2 else None, "AMOUNT_CENTS": 100 * i + d,
             "CREATED_AT": datetime.combine(base.date() - timedelta(days=d), datetime.min.time()) + timedelta(minutes=7 * i),
             "LOADED_AT": base - timedelta(minutes=loaded_minutes_ago)}
            for d in days for i in range(per_day)]


ROWS = orders()
CHANGED = [r | {"STATUS": "refunded"} if r["ID"] == 2005 else r for r in ROWS]  # same count, other content


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with fakesnow_server() as url:
        with seed_connection(url) as conn:
            cur = conn.cursor()
            cur.execute("CREATE DATABASE ANALYTICS")
            cur.execute("CREATE SCHEMA ANALYTICS.RAW")
            for table, rows in (("ORDERS_EQUAL", ROWS), ("ORDERS_SHORT", [r for r in ROWS if r["ID"] not in (2003, 2004)]),
                                ("ORDERS_STALE", orders(loaded_minutes_ago=300)), ("ORDERS_CHANGED", CHANGED),
                                ("ORDERS_COPY", ROWS)):
                cur.execute(f"CREATE TABLE ANALYTICS.RAW.{table} ({COLUMNS})")
                insert_rows(conn, f"ANALYTICS.RAW.{table}", rows)
        yield url


def test_snowflake_tables_reconciled_with_postgres_and_with_each_other(endpoint, pg_dsn, store):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("create table orders (id int, status text, amount_cents bigint, created_at timestamptz, "
                     "loaded_at timestamptz)")
        with conn.cursor() as cur:
            cur.executemany("insert into orders values (%(ID)s, %(STATUS)s, %(AMOUNT_CENTS)s, %(CREATED_AT)s, %(LOADED_AT)s)",
                            [r | {"CREATED_AT": r["CREATED_AT"].replace(tzinfo=timezone.utc),
                                  "LOADED_AT": r["LOADED_AT"].replace(tzinfo=timezone.utc)} for r in ROWS])
    pg = save_connection(pg_dsn)
    sf = save_connector(f"sf-{uuid.uuid4().hex[:8]}", "acme-prod")

    def snowflake(table: str) -> dict:
        return {"engine": "snowflake", "connection": sf, "table": f"analytics.raw.{table}", "day_column": "created_at",
                "freshness_column": "loaded_at"}

    def spec(name: str, target: str, source: dict | None = None) -> dict:
        return {"name": name, "target": snowflake(target), "window_days": 7, "freshness_sla_minutes": 60,
                "checksum_columns": ["id", "status", "amount_cents"],
                "source": source or {"connection": pg, "table": "orders", "day_column": "created_at",
                                     "freshness_column": "loaded_at"}}

    block = f"pipelines-{uuid.uuid4().hex[:8]}"
    IntegrityPipelines(pipelines=[
        spec("sf-equal", "orders_equal"),  # trap: equal counts and equal checksums across engines
        spec("sf-short", "orders_short"),
        spec("sf-stale", "orders_stale"),
        spec("sf-changed", "orders_changed"),
        spec("sf-to-sf", "orders_copy", source=snowflake("orders_equal")),  # trap: Snowflake as the source
        spec("sf-gone", "orders_gone"),
    ]).save(block)

    result = data_integrity(pipelines_file=None, pipelines_block=block, endpoints={sf: endpoint},
                            store=store._block_document_name, now=NOW)

    by_name = {r["pipeline"]: r for r in result}
    assert {n: r["status"] for n, r in by_name.items()} == {
        "sf-equal": "ok", "sf-short": "row-count-mismatch", "sf-stale": "stale-data",
        "sf-changed": "checksum-mismatch", "sf-to-sf": "ok", "sf-gone": "missing-table"}
    assert (by_name["sf-equal"]["source_count"], by_name["sf-equal"]["target_count"],
            by_name["sf-equal"]["lag_minutes"]) == (60, 60, 20.0)
    assert by_name["sf-short"]["diff"] == -2
    assert by_name["sf-stale"]["lag_minutes"] == 300.0
    open_findings = {f["resource_id"]: f for f in store.findings_of(JOB, "open")}
    assert sorted(open_findings) == ["sf-changed", "sf-gone", "sf-short", "sf-stale"]
    day2 = (NOW.date() - timedelta(days=2)).isoformat()
    assert open_findings["sf-short"]["data"]["numbers"]["days"] == [{"day": day2, "source": 20, "target": 18}]
    assert open_findings["sf-changed"]["data"]["numbers"]["days"] == [day2]  # the day of the changed row


def test_snowflake_side_bad_input_names_the_field(store):
    bad = {"name": "x", "target": {"engine": "snowflake", "connection": "sf", "table": 'analytics.raw."Orders"'}}
    with pytest.raises(ConfigError, match="field `target`.*unquoted Snowflake names"):
        data_integrity(pipelines_file=None, pipelines_block=_saved([bad]), store=store._block_document_name, now=NOW)
    missing = {"name": "x", "target": {"engine": "snowflake", "connection": "no-such-sf", "table": "raw.orders"}}
    with pytest.raises(ConfigError, match=r"SnowflakeConnector block 'no-such-sf' \(parameter `pipelines\[x\].target.connection`\) does not exist"):
        data_integrity(pipelines_file=None, pipelines_block=_saved([missing]), store=store._block_document_name, now=NOW)


def _saved(pipelines: list[dict]) -> str:
    name = f"pipelines-{uuid.uuid4().hex[:8]}"
    IntegrityPipelines(pipelines=pipelines).save(name)
    return name


def test_the_snowflake_role_of_data_integrity_is_generated_from_its_reads():
    """Least privilege from code: what `measure_snowflake_tables` declares, as a script."""
    import flows.data_integrity
    from deployments.snowflake_grants import grant_script, snowflake_grants

    grants = snowflake_grants(flows.data_integrity)
    assert grant_script(grants, "OPS_INTEGRITY", "DATAPLATFORM_OPS").splitlines() == [
        "CREATE ROLE IF NOT EXISTS OPS_INTEGRITY;",
        "GRANT SELECT ON TABLE <table> TO ROLE OPS_INTEGRITY;  -- each pipeline table",
        "GRANT USAGE ON DATABASE <database> TO ROLE OPS_INTEGRITY;  -- each pipeline table's database",
        "GRANT USAGE ON SCHEMA <schema> TO ROLE OPS_INTEGRITY;  -- each pipeline table's schema",
        "GRANT USAGE ON WAREHOUSE <warehouse> TO ROLE OPS_INTEGRITY;  -- the connector block's warehouse",
        "GRANT ROLE OPS_INTEGRITY TO USER DATAPLATFORM_OPS;",
    ]
    assert not any("ACCOUNT_USAGE" in g or "VIEWER" in g or "MANAGE" in g for g in grants)
