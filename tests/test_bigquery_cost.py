"""BigQuery cost report and expensive-query watch, against bqemulator with the real client.

No emulator has the JOBS views' billing columns, so each project gets an ordinary table with
the real INFORMATION_SCHEMA.JOBS column names and types (`jobs_table` is a flow parameter),
seeded with planted jobs. The google-cloud-bigquery client is real and talks HTTP to the
emulator; nothing in it is mocked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from deployments.local_bigquery import (
    JOBS_SCHEMA,
    bigquery_emulator,
    create_table,
    emulator_client,
    insert_rows,
    job_row,
)
from flows.bigquery_cost_report import JOB as REPORT_JOB
from flows.bigquery_cost_report import bigquery_cost_report
from flows.bigquery_query_cost_watch import JOB as WATCH_JOB
from flows.bigquery_query_cost_watch import bigquery_query_cost_watch
from rules.bigquery_cost import (
    TIB,
    BigQueryPricing,
    CostReportPolicy,
    JobRecord,
    QueryWatchPolicy,
    check_scopes,
    expensive_query_findings,
    jobs_table_path,
    list_cost_usd,
    net_costs_usd,
    report_window,
    user_budget_findings,
    watch_start,
    window_note,
)
from rules.config import ConfigError
from rules.findings import Finding

TABLE = "{project}.jobs_history.jobs_{region}"
ANALYTICS, ETL = "acme-analytics", "acme-etl"
# The emulator has no IAM: for a project id BigQuery itself would refuse (double hyphen) it
# answers 403 Access Denied, exactly what BigQuery answers for a project the credentials
# may not read. That is our "project without permission".
RESTRICTED = "acme--restricted"
ALICE, BOB, CAROL = "alice@acme.test", "bob@acme.test", "carol@acme.test"
FREE = BigQueryPricing(free_tib_per_month=0)  # list prices only, so the $ figures are exact


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def job(project: str, job_id: str, user: str, created: datetime, tib: float, **kw) -> dict:
    return job_row(project, job_id, user, created, int(tib * TIB), **kw)


PLANTED = {
    ANALYTICS: [
        job(ANALYTICS, "j1", ALICE, at(24, 10), 2.0,  # $12.50: alert
            query="SELECT * FROM sales WHERE customer = 'ACME Corp' AND amount > 1000"),
        job(ANALYTICS, "j2", ALICE, at(24, 11), 0.5),  # $3.125
        # a script: the parent reports its children's bytes again and must not count
        job(ANALYTICS, "j3", BOB, at(24, 9), 1.6, statement="SCRIPT", query="BEGIN ... END"),
        job(ANALYTICS, "j3-c1", BOB, at(24, 9, 1), 1.0, parent="j3"),  # $6.25: alert
        job(ANALYTICS, "j3-c2", BOB, at(24, 9, 2), 0.6, parent="j3"),  # $3.75
        job(ANALYTICS, "j4", CAROL, at(24, 12), 0.0, cached=True),  # cached: $0
        job(ANALYTICS, "j5", CAROL, at(23, 15), 4.0, seconds=300),  # $25: critical alert
        job(ANALYTICS, "j6", BOB, at(23, 16), 0.2),  # $1.25
        job(ANALYTICS, "j7", BOB, at(24, 13), 3.0, state="RUNNING"),  # not done: not yet
    ],
    ETL: [
        job(ETL, "k1", CAROL, at(24, 2), 1.2, statement="CREATE_TABLE_AS_SELECT",
            destination=(ETL, "marts", "daily_sales")),  # $7.50: alert
        job(ETL, "k2", ALICE, at(24, 3), 0.1),  # $0.625
    ],
}


@pytest.fixture(scope="module")
def bq() -> Iterator[str]:
    """The emulator with each project's planted job history; yields its endpoint."""
    with bigquery_emulator(project=ANALYTICS) as endpoint:
        for project, rows in PLANTED.items():
            client = emulator_client(endpoint, project)
            table = TABLE.format(project=project, region="us")
            create_table(client, table, JOBS_SCHEMA, partition_field="creation_time")
            insert_rows(client, table, rows)
        yield endpoint


def add_jobs(endpoint: str, project: str, rows: list[dict]) -> None:
    insert_rows(emulator_client(endpoint, project), TABLE.format(project=project, region="us"), rows)


# --- rules, without I/O ----------------------------------------------------------------


def record(job_id: str, tib: float, created: datetime, project: str = ANALYTICS, **kw) -> JobRecord:
    return JobRecord(project_id=project, region="us", user_email=kw.pop("user", ALICE),
                     job_id=job_id, creation_time=created, total_bytes_billed=int(tib * TIB), **kw)


def test_list_price_cache_and_slot_pricing():
    pricing = BigQueryPricing(slot_priced_projects=["acme-reserved"], slot_hour_usd=0.04)
    assert list_cost_usd(record("a", 2, at(24, 1)), pricing) == pytest.approx(12.5)
    assert list_cost_usd(record("b", 2, at(24, 1), cache_hit=True), pricing) == 0
    reserved = record("c", 9, at(24, 1), project="acme-reserved", total_slot_ms=3 * 3_600_000)
    assert list_cost_usd(reserved, pricing) == pytest.approx(0.12)  # 3 slot-hours, bytes ignored


def test_free_tib_is_consumed_in_creation_order_and_resets_each_month():
    pricing = BigQueryPricing(free_tib_per_month=1.0)
    jobs = [record("late", 1.0, at(20, 1)), record("early", 0.6, at(2, 1)),
            record("mid", 0.8, at(10, 1)),
            record("dec", 0.5, datetime(2026, 12, 1, 1, tzinfo=timezone.utc)),
            record("parent", 5, at(3, 1), statement_type="SCRIPT")]
    net = net_costs_usd(jobs, pricing)
    assert net["early"] == 0  # inside the free TiB
    assert net["mid"] == pytest.approx(0.4 * 6.25)  # 0.4 TiB past it
    assert net["late"] == pytest.approx(6.25)
    assert net["dec"] == 0  # a new month, a new free TiB
    assert "parent" not in net


def test_expensive_query_and_budget_findings():
    policy = QueryWatchPolicy(pricing=FREE, critical_usd=20, user_daily_budget_usd=10)
    jobs = [record("big", 4, at(24, 1)), record("ok", 0.8, at(24, 2)),
            record("script", 9, at(24, 3), statement_type="SCRIPT"),
            record("cached", 0, at(24, 4), cache_hit=True, user=BOB)]
    findings = expensive_query_findings(jobs, policy)
    assert [(f.resource_id, f.severity.value) for f in findings] == [("big", "critical")]
    budget = user_budget_findings(jobs, policy, at(24, 23))
    assert [(f.resource_id, f.numbers["cost_usd"]) for f in budget] == [
        (f"{ALICE}@2026-11-24", 30.0)]
    assert user_budget_findings(jobs, policy, at(25, 1)) == []  # a new day


def test_windows():
    w = report_window(date(2026, 11, 24), 2)
    assert (w.start, w.end, w.previous_start, w.read_start) == (
        at(23, 0), at(25, 0), at(21, 0), at(1, 0))  # month start: the free tier needs it
    policy = QueryWatchPolicy(lookback_hours=6)
    assert watch_start(None, at(24, 12), policy) == at(23, 12)  # first run: the 24 h backfill
    assert watch_start(None, at(24, 12), QueryWatchPolicy(first_run_hours=72)) == at(21, 12)
    assert window_note("p/us", at(23, 12), at(24, 12), True, policy) == (
        "p/us: read jobs created 2026-11-23 12:00 to 2026-11-24 12:00 UTC (first run: a 24 h backfill; "
        "set `policy.first_run_hours` up to 720 to read further back)")
    assert "first run" not in window_note("p/us", at(24, 5), at(24, 12), False, policy)
    assert watch_start(at(24, 11), at(24, 12), policy) == at(24, 5)
    budget = QueryWatchPolicy(lookback_hours=6, user_daily_budget_usd=50)
    assert watch_start(at(24, 11), at(24, 12), budget) == at(24, 0)


def test_bad_scopes_are_refused_before_any_query():
    check_scopes([ANALYTICS], ["us", "europe-west2"], TABLE)
    with pytest.raises(ConfigError, match="`regions`.*'US Central'"):
        check_scopes([ANALYTICS], ["US Central"], TABLE)
    with pytest.raises(ConfigError, match="`projects`.*'My Project'"):
        check_scopes(["My Project"], ["us"], TABLE)
    with pytest.raises(ConfigError, match="`jobs_table`"):
        check_scopes([ANALYTICS], ["us"], "{project}.{dataset}.jobs")
    with pytest.raises(ConfigError, match="`jobs_table`"):
        jobs_table_path("{project}.x`; DROP TABLE y; --.jobs", ANALYTICS, "us")
    assert jobs_table_path("{project}.region-{region}.INFORMATION_SCHEMA.JOBS_BY_PROJECT",
                           ANALYTICS, "eu") == (
        "`acme-analytics.region-eu.INFORMATION_SCHEMA.JOBS_BY_PROJECT`")


# --- flows against the emulator --------------------------------------------------------


def costs_by_line(lines) -> dict[tuple[str, str, str], tuple[int, float]]:
    return {(c.project, c.user, c.day.isoformat()): (c.jobs, round(c.list_usd, 4)) for c in lines}


def test_cost_report_exact_costs_per_project_user_day_and_idempotent_history(bq, store):
    kwargs = dict(projects=[ANALYTICS, ETL], regions=["us"], emulator_endpoint=bq,
                  jobs_table=TABLE, store=store._block_document_name, last_day=date(2026, 11, 24),
                  policy=CostReportPolicy(pricing=FREE, days=2, top_queries=3),
                  now=at(25, 6))
    result = bigquery_cost_report(**kwargs)
    assert result["errors"] == {}
    assert costs_by_line(result["lines"]) == {
        (ANALYTICS, ALICE, "2026-11-24"): (2, 15.625),
        (ANALYTICS, BOB, "2026-11-24"): (2, 10.0),  # script children only, not the parent
        (ANALYTICS, CAROL, "2026-11-24"): (1, 0.0),  # cached
        (ANALYTICS, CAROL, "2026-11-23"): (1, 25.0),
        (ANALYTICS, BOB, "2026-11-23"): (1, 1.25),
        (ETL, CAROL, "2026-11-24"): (1, 7.5),
        (ETL, ALICE, "2026-11-24"): (1, 0.625),
    }
    assert all(c.cost_usd == pytest.approx(c.list_usd) for c in result["lines"])  # no free tier
    assert [q["job_id"] for q in result["top_queries"]] == ["j5", "j1", "k1"]
    assert [(t["project"], t["current_usd"], t["previous_usd"], t["change"])
            for t in result["trend"]] == [
        (ANALYTICS, pytest.approx(51.875, abs=0.006), 0.0, "new"),
        (ETL, pytest.approx(8.125, abs=0.006), 0.0, "new"),
    ]

    def history():
        rows = store.metric_history(REPORT_JOB, f"bigquery_cost_usd:{ANALYTICS}:us")
        return sorted((r["subject"], r["ts"].date().isoformat(), round(r["value"], 4)) for r in rows)

    first = history()
    assert first == [(ALICE, "2026-11-24", 15.625), (BOB, "2026-11-23", 1.25),
                     (BOB, "2026-11-24", 10.0), (CAROL, "2026-11-23", 25.0),
                     (CAROL, "2026-11-24", 0.0)]
    bigquery_cost_report(**kwargs)  # re-running the same days replaces them
    assert history() == first


def test_cost_report_applies_the_free_tib_and_compares_with_the_previous_period(bq, store):
    kwargs = dict(projects=[ANALYTICS, ETL], emulator_endpoint=bq, jobs_table=TABLE,
                  store=store._block_document_name, now=at(25, 6))
    nov23 = bigquery_cost_report(last_day=date(2026, 11, 23), **kwargs)
    # The month's first jobs: carol's 4 TiB uses the free TiB, bob's later 0.2 TiB pays.
    assert {(c.user, round(c.list_usd, 4), round(c.cost_usd, 4)) for c in nov23["lines"]} == {
        (CAROL, 25.0, 18.75), (BOB, 1.25, 1.25)}
    nov24 = bigquery_cost_report(last_day=date(2026, 11, 24), **kwargs)
    # Nov 23 is read too (month start): the free TiB is gone, so Nov 24 pays list price.
    assert all(c.cost_usd == pytest.approx(c.list_usd) for c in nov24["lines"])
    assert {t["project"]: t["change"] for t in nov24["trend"]} == {ANALYTICS: "-2%", ETL: "new"}


def test_watch_announces_each_expensive_job_once(bq, store):
    policy = QueryWatchPolicy(pricing=FREE, critical_usd=20, user_daily_budget_usd=10,
                              lookback_hours=48, first_run_hours=48)
    kwargs = dict(projects=[ANALYTICS, ETL], emulator_endpoint=bq, jobs_table=TABLE,
                  store=store._block_document_name, policy=policy)
    opened = bigquery_query_cost_watch(now=at(24, 23), **kwargs)
    assert sorted((f.kind, f.resource_id, f.severity.value) for f in opened) == [
        ("bigquery-expensive-query", "j1", "warning"),
        ("bigquery-expensive-query", "j3-c1", "warning"),
        ("bigquery-expensive-query", "j5", "critical"),
        ("bigquery-expensive-query", "k1", "warning"),
        ("bigquery-user-daily-budget", f"{ALICE}@2026-11-24", "warning"),  # $16.25 > $10
    ]
    with get_client(sync_client=True) as client:
        [summary] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=[f"{WATCH_JOB}-summary"])), sort=ArtifactSort.CREATED_DESC, limit=1)
    assert f"{ANALYTICS}/us: read jobs created 2026-11-22 23:00" in summary.data
    assert "first run: a 48 h backfill" in summary.data
    j1 = next(f for f in opened if f.resource_id == "j1")
    assert j1.scope == ANALYTICS
    assert j1.numbers["cost_usd"] == 12.5 and j1.numbers["bytes_billed"] == 2 * TIB
    assert j1.numbers["user"] == ALICE and j1.numbers["statement_type"] == "SELECT"
    assert j1.numbers["duration_s"] == 60
    assert j1.numbers["query"] == "SELECT * FROM sales WHERE customer = '?' AND amount > ?"
    assert "ACME Corp" not in j1.reason
    assert j1.url == ("https://console.cloud.google.com/bigquery?project=acme-analytics"
                      "&j=bq:US:j1&page=queryresults")
    k1 = next(f for f in opened if f.resource_id == "k1")
    assert k1.numbers["destination_table"] == "acme-etl.marts.daily_sales"
    assert k1.numbers["statement_type"] == "CREATE_TABLE_AS_SELECT"

    # The same window again (a retry), then an overlapping later run: nothing repeats.
    assert bigquery_query_cost_watch(now=at(24, 23), **kwargs) == []
    assert bigquery_query_cost_watch(now=at(24, 23, 10), **kwargs) == []

    # A new expensive job, and the running one finished: only those are announced.
    add_jobs(bq, ANALYTICS, [job(ANALYTICS, "j8", BOB, at(24, 23, 5), 0.9),  # $5.625
                             job(ANALYTICS, "j7", BOB, at(24, 13), 3.0)])  # now DONE: $18.75
    opened = bigquery_query_cost_watch(now=at(24, 23, 20), **kwargs)
    assert {f.resource_id for f in opened} == {"j7", "j8", f"{BOB}@2026-11-24"}
    assert bigquery_query_cost_watch(now=at(24, 23, 30), **kwargs) == []

    keys = {r["key"] for r in store.findings_of(WATCH_JOB)}
    assert len(keys) == 8  # every announced event is remembered, so none is announced again
    assert store.get_watermark(WATCH_JOB, f"{ANALYTICS}/us") == at(24, 23, 30).isoformat()


def test_bad_project_and_region_are_named_and_the_others_complete(bq, store):
    result = bigquery_cost_report(
        projects=[ANALYTICS, RESTRICTED], regions=["us", "eu"], emulator_endpoint=bq,
        jobs_table=TABLE, store=store._block_document_name, last_day=date(2026, 11, 24),
        policy=CostReportPolicy(pricing=FREE), now=at(25, 6))
    errors = result["errors"]
    assert set(errors) == {f"{ANALYTICS}/eu", f"{RESTRICTED}/us", f"{RESTRICTED}/eu"}
    assert errors[f"{ANALYTICS}/eu"].startswith(f"project {ANALYTICS} region eu:")
    assert "not found — check the region" in errors[f"{ANALYTICS}/eu"]
    assert errors[f"{RESTRICTED}/us"].startswith(f"project {RESTRICTED} region us: permission denied")
    assert "roles/bigquery.resourceViewer" in errors[f"{RESTRICTED}/us"]
    # acme-analytics/us was still read in full
    assert {c.project for c in result["lines"]} == {ANALYTICS}
    alice = next(c for c in result["lines"] if c.user == ALICE)
    assert alice.list_usd == pytest.approx(15.625)


def test_bad_region_fails_before_any_query(store):
    with pytest.raises(ConfigError, match="`regions`"):
        bigquery_query_cost_watch(projects=[ANALYTICS], regions=["region-us"],
                                  emulator_endpoint="http://127.0.0.1:9", store=store._block_document_name)


@pytest.mark.parametrize("which", ["store", "pg_store"])
def test_overlapping_runs_claim_each_event_once(which, request):
    """Runs racing on the same jobs: each event is claimed (so announced) by exactly one."""
    ops_store = request.getfixturevalue(which)
    ops_store.check()  # as `load_store` does in every flow: tables exist before runs start
    events = [Finding(kind="bigquery-expensive-query", resource_id=f"job-{i}", scope=ANALYTICS,
                      reason="$9 query") for i in range(40)]
    barrier = threading.Barrier(4)

    def run(offset: int) -> list[str]:
        barrier.wait()
        mine = events[offset:] + events[:offset]  # different orders, same events
        return [f.key for f in ops_store.claim_findings(WATCH_JOB, mine, at(24, 12))]

    with ThreadPoolExecutor(4) as pool:
        claimed = [key for keys in pool.map(run, [0, 10, 20, 30]) for key in keys]
    assert sorted(claimed) == sorted(e.key for e in events)  # all claimed, none twice
    assert ops_store.claim_findings(WATCH_JOB, events, at(24, 13)) == []


def test_missing_credentials_block_is_named(store):
    with pytest.raises(ConfigError, match="`gcp_credentials`"):
        bigquery_cost_report(projects=[ANALYTICS], gcp_credentials="no-such-gcp-block",
                             store=store._block_document_name)
