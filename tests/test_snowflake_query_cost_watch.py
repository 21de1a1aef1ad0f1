"""Snowflake expensive-query watch against a fakesnow server, with the real connector.

QUERY_ATTRIBUTION_HISTORY and QUERY_HISTORY are tables with the views' documented columns
(fakesnow has no ACCOUNT_USAGE), filled with planted queries; each is announced at most once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from deployments.local_snowflake import (
    create_account_usage,
    fakesnow_server,
    insert_rows,
    save_connector,
    seed_connection,
)
from flows.snowflake_query_cost_watch import JOB, snowflake_query_cost_watch
from rules.snowflake_cost import KIND_EXPENSIVE_QUERY, SnowflakeQueryCostPolicy
from tests.test_snowflake_cost_report import attributed, executed

AU = "SNOWFLAKE.ACCOUNT_USAGE"
PROD = "acme-prod"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
POLICY = SnowflakeQueryCostPolicy(threshold_usd=5, critical_usd=15, login_timeout_seconds=5)  # $3 a credit


def at(hour: int, minute: int = 0) -> datetime:
    return NOW.replace(hour=hour, minute=minute)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with fakesnow_server() as url:
        with seed_connection(url) as conn:
            create_account_usage(conn)
            insert_rows(conn, f"{AU}.QUERY_ATTRIBUTION_HISTORY", [
                attributed("a1", "ETL_WH", "ALICE", at(4), 3.0),  # $9
                attributed("a2", "ETL_WH", "BOB", at(5), 1.0),  # $3: under the threshold
                attributed("old", "ETL_WH", "BOB", at(1), 10.0),  # before the first window (9 h back)
            ])
            insert_rows(conn, f"{AU}.QUERY_HISTORY", [
                executed("a1", "ETL_WH", "Medium", "ALICE", at(4), 45 * 60_000,
                         "MERGE INTO marts.orders USING raw.orders ON id = 42"),
                executed("a2", "ETL_WH", "Medium", "BOB", at(5), 15 * 60_000),
                # not attributed yet: 20 min on an X-Large (16 credits/h) = 5.33 credits, $16 estimated
                executed("x1", "BI_WH", "X-Large", "CAROL", at(6), 20 * 60_000),
                executed("s1", "BI_WH", "X-Small", "DAVE", at(7), 30 * 60_000),  # 0.5 credits
            ])
        yield url


def test_each_expensive_query_is_announced_once_across_overlapping_runs(endpoint, store):
    name = save_connector(f"sf-{uuid.uuid4().hex[:8]}", PROD)
    kwargs = dict(accounts=[name], endpoints={name: endpoint}, store=store._block_document_name, policy=POLICY)
    opened = snowflake_query_cost_watch(now=NOW, **kwargs)
    assert sorted((f.kind, f.resource_id, f.severity.value, f.numbers["usd"], f.numbers["estimated"])
                  for f in opened) == [
        (KIND_EXPENSIVE_QUERY, "a1", "warning", 9.0, False),  # attributed wins over the estimate
        (KIND_EXPENSIVE_QUERY, "x1", "critical", 16.0, True),
    ]
    a1 = next(f for f in opened if f.resource_id == "a1")
    assert a1.scope == PROD and "id = ?" in a1.reason and "42" not in a1.reason

    # A retry of the same window, then an overlapping later run: nothing repeats.
    assert snowflake_query_cost_watch(now=NOW, **kwargs) == []
    assert snowflake_query_cost_watch(now=NOW + timedelta(minutes=15), **kwargs) == []

    # x1's attribution arrives (cheaper than estimated) and a new query costs $6: only that one is new.
    with seed_connection(endpoint) as conn:
        insert_rows(conn, f"{AU}.QUERY_ATTRIBUTION_HISTORY", [
            attributed("x1", "BI_WH", "CAROL", at(6), 4.0), attributed("a3", "ETL_WH", "ERIN", at(11, 50), 2.0)])
    opened = snowflake_query_cost_watch(now=NOW + timedelta(minutes=30), **kwargs)
    assert [(f.resource_id, f.numbers["usd"]) for f in opened] == [("a3", 6.0)]
    assert len(store.findings_of(JOB)) == 3
    assert store.get_watermark(JOB, PROD) == (NOW + timedelta(minutes=30)).isoformat()


def test_the_report_says_what_window_a_run_read_and_how_to_backfill():
    from rules.snowflake_cost import watch_start, window_note

    first = window_note(PROD, watch_start(None, NOW, 48), NOW, True, 48)
    assert first == (f"{PROD}: read queries started {NOW - timedelta(hours=48):%Y-%m-%d %H:%M} to "
                     f"{NOW:%Y-%m-%d %H:%M} UTC (first run: the last 48 h; raise `policy.lookback_hours` "
                     "for a longer backfill)")
    later = window_note(PROD, watch_start(NOW, NOW + timedelta(hours=1), 2), NOW + timedelta(hours=1), False, 2)
    assert "first run" not in later and f"started {NOW - timedelta(hours=2):%Y-%m-%d %H:%M}" in later
