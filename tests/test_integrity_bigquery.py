"""data-integrity with a BigQuery target: the real BigQuery client against bqemulator, a real
PostgreSQL source. No Google credentials exist here, so `GcpCredentials` hands out anonymous
credentials (the one replaced method) and `BIGQUERY_EMULATOR_HOST` points the client, built by
the block's own `get_bigquery_client`, at the emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from prefect_gcp import GcpCredentials

from blocks.pipelines import IntegrityPipelines
from deployments.local_bigquery import bigquery_emulator, create_table, emulator_client, insert_rows
from flows.data_integrity import data_integrity
from rules.integrity import JOB
from tests.test_integrity import save_connection

PROJECT = "local-project"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
SCHEMA = [bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("status", "STRING"),
          bigquery.SchemaField("created_at", "TIMESTAMP"),
          bigquery.SchemaField("loaded_at", "TIMESTAMP")]


@pytest.fixture(scope="module")
def bq_endpoint() -> Iterator[str]:
    with bigquery_emulator(project=PROJECT) as endpoint:
        yield endpoint


def orders(days=(1, 2, 3), per_day=20) -> list[dict]:
    return [
        {"id": d * 1000 + i, "status": "paid" if i % 2 else None,
         "created_at": datetime.combine(NOW.date() - timedelta(days=d), datetime.min.time(),
                                        timezone.utc) + timedelta(minutes=7 * i),
         "loaded_at": NOW - timedelta(minutes=20)}
        for d in days for i in range(per_day)
    ]


@pytest.mark.slow
def test_bigquery_target_reconciled_with_postgres_source(bq_endpoint, pg_dsn, store, monkeypatch):
    bq = emulator_client(bq_endpoint, PROJECT)
    rows = orders()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("create table orders (id int, status text, created_at timestamptz, "
                     "loaded_at timestamptz)")
        with conn.cursor() as cur:
            cur.executemany("insert into orders values (%(id)s, %(status)s, %(created_at)s, "
                            "%(loaded_at)s)", rows)
    as_json = [{**r, "created_at": r["created_at"].isoformat(),
                "loaded_at": r["loaded_at"].isoformat()} for r in rows]
    for table, data in (("orders_equal", as_json),
                        ("orders_short", [r for r in as_json if r["id"] not in (2003, 2004)])):
        create_table(bq, f"{PROJECT}.raw.{table}", SCHEMA)
        insert_rows(bq, f"{PROJECT}.raw.{table}", data)

    monkeypatch.setattr(GcpCredentials, "get_credentials_from_service_account",
                        lambda self: AnonymousCredentials())
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq_endpoint)
    gcp = f"gcp-{uuid.uuid4().hex[:8]}"
    GcpCredentials(project=PROJECT).save(gcp)
    src = save_connection(pg_dsn)

    def spec(name: str, table: str) -> dict:
        return {
            "name": name,
            "source": {"connection": src, "table": "orders", "day_column": "created_at",
                       "freshness_column": "loaded_at"},
            "target": {"engine": "bigquery", "connection": gcp, "table": f"{PROJECT}.raw.{table}",
                       "day_column": "created_at", "freshness_column": "loaded_at"},
            "window_days": 7, "freshness_sla_minutes": 60,
            "checksum_columns": ["id", "status", "created_at"],
        }

    block = f"pipelines-{uuid.uuid4().hex[:8]}"
    IntegrityPipelines(pipelines=[spec("bq-equal", "orders_equal"), spec("bq-short", "orders_short"),
                                  spec("bq-gone", "orders_gone")]).save(block)

    result = data_integrity(pipelines_file=None, pipelines_block=block,
                            store=store._block_document_name, now=NOW)

    by_name = {r["pipeline"]: r for r in result}
    # Equal counts *and* equal checksums across engines: the row hash is the same text on both.
    assert {n: r["status"] for n, r in by_name.items()} == {
        "bq-equal": "ok", "bq-short": "row-count-mismatch", "bq-gone": "missing-table"}
    assert (by_name["bq-equal"]["target_count"], by_name["bq-equal"]["lag_minutes"]) == (60, 20.0)
    assert by_name["bq-short"]["diff"] == -2
    [short] = [f for f in store.findings_of(JOB, "open") if f["resource_id"] == "bq-short"]
    day2 = (NOW.date() - timedelta(days=2)).isoformat()
    assert short["data"]["numbers"]["days"] == [{"day": day2, "source": 20, "target": 18}]
