"""Snowflake cost report, against a fakesnow server with the real snowflake-connector-python.

fakesnow has no SNOWFLAKE.ACCOUNT_USAGE, so each account's views are created as ordinary tables
with Snowflake's documented columns (deployments/local_snowflake.py) and filled with planted
rows; the connector, prefect-snowflake's blocks (key-pair auth) and the HTTP protocol are real.
One fakesnow process is one account.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import pytest

from deployments.local_snowflake import (
    create_account_usage,
    fakesnow_server,
    insert_rows,
    save_connector,
    seed_connection,
)
from flows.snowflake_cost_report import JOB, METRIC, snowflake_cost_report
from rules.config import ConfigError
from rules.snowflake import (
    SnowflakePricing,
    access_problem,
    billed_cloud_services,
    check_account_identifier,
    credits_per_hour,
)
from rules.snowflake_cost import (
    CLOUD_SERVICES,
    IDLE,
    MeteredHour,
    SnowflakeCostReportPolicy,
    UserUsage,
    billed_by_day,
    warehouse_day_lines,
)

AU = "SNOWFLAKE.ACCOUNT_USAGE"
PROD = "acme-prod"
POLICY = SnowflakeCostReportPolicy(top_queries=3, login_timeout_seconds=5)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def metered(warehouse: str, start: datetime, compute: float, services: float) -> dict:
    return {"START_TIME": start, "END_TIME": start + timedelta(hours=1), "WAREHOUSE_ID": len(warehouse),
            "WAREHOUSE_NAME": warehouse, "CREDITS_USED": compute + services, "CREDITS_USED_COMPUTE": compute,
            "CREDITS_USED_CLOUD_SERVICES": services, "CREDITS_ATTRIBUTED_COMPUTE_QUERIES": None}


def attributed(query_id: str, warehouse: str, user: str, start: datetime, credits: float) -> dict:
    return {"QUERY_ID": query_id, "PARENT_QUERY_ID": None, "ROOT_QUERY_ID": None, "WAREHOUSE_ID": 1,
            "WAREHOUSE_NAME": warehouse, "QUERY_HASH": f"h{query_id}", "QUERY_PARAMETERIZED_HASH": f"p{query_id}",
            "QUERY_TAG": "", "USER_NAME": user, "START_TIME": start, "END_TIME": start + timedelta(minutes=5),
            "CREDITS_ATTRIBUTED_COMPUTE": credits, "CREDITS_USED_QUERY_ACCELERATION": None}


def executed(query_id: str, warehouse: str, size: str, user: str, start: datetime, execution_ms: int,
             text: str = "SELECT 1") -> dict:
    return {"QUERY_ID": query_id, "QUERY_TEXT": text, "DATABASE_NAME": "ANALYTICS", "SCHEMA_NAME": "PUBLIC",
            "QUERY_TYPE": "SELECT", "SESSION_ID": 7, "USER_NAME": user, "ROLE_NAME": "ANALYST",
            "WAREHOUSE_ID": 1, "WAREHOUSE_NAME": warehouse, "WAREHOUSE_SIZE": size, "WAREHOUSE_TYPE": "STANDARD",
            "CLUSTER_NUMBER": 1, "QUERY_TAG": "", "EXECUTION_STATUS": "SUCCESS", "ERROR_CODE": None,
            "ERROR_MESSAGE": None, "START_TIME": start, "END_TIME": start + timedelta(milliseconds=execution_ms + 500),
            "TOTAL_ELAPSED_TIME": execution_ms + 500, "BYTES_SCANNED": 10**9, "ROWS_PRODUCED": 10,
            "COMPILATION_TIME": 500, "EXECUTION_TIME": execution_ms, "QUEUED_PROVISIONING_TIME": 0,
            "QUEUED_REPAIR_TIME": 0, "QUEUED_OVERLOAD_TIME": 0, "TRANSACTION_BLOCKED_TIME": 0,
            "CREDITS_USED_CLOUD_SERVICES": 0.001, "TRANSACTION_ID": 1}


HOUR_MS = 3_600_000
# Nov 24: ETL_WH (Medium) is attributed; BI_WH and LOAD_WH (X-Small) have no attribution rows yet,
# so their users are estimated (LOAD_WH's two concurrent hour-long queries add up to twice what it
# metered). Day compute 9 credits, cloud services 1.0: 0.1 billed above the free 10 %.
PLANTED = {
    "WAREHOUSE_METERING_HISTORY": [
        metered("ETL_WH", at(24, 1), 4.0, 0.15), metered("ETL_WH", at(24, 2), 2.0, 0.10),
        metered("BI_WH", at(24, 9), 1.0, 0.50), metered("BI_WH", at(24, 10), 1.0, 0.25),
        metered("LOAD_WH", at(24, 14), 1.0, 0.0),
        metered("ETL_WH", at(23, 3), 5.0, 0.3),  # the previous day: cloud services within 10 %: free
        metered("ETL_WH", at(25, 0), 7.0, 0.0),  # the next day: not in the report
    ],
    "QUERY_ATTRIBUTION_HISTORY": [
        attributed("q1", "ETL_WH", "ALICE", at(24, 1, 5), 3.0),
        attributed("q2", "ETL_WH", "BOB", at(24, 2, 10), 1.5),
        attributed("q3", "ETL_WH", "ALICE", at(24, 2, 30), 0.5),
    ],
    "QUERY_HISTORY": [
        executed("q1", "ETL_WH", "Medium", "ALICE", at(24, 1, 5), 45 * 60_000,
                 "INSERT INTO marts.orders SELECT * FROM raw.orders WHERE customer = 'ACME Corp'"),
        executed("q2", "ETL_WH", "Medium", "BOB", at(24, 2, 10), 20 * 60_000),
        executed("q3", "ETL_WH", "Medium", "ALICE", at(24, 2, 30), 8 * 60_000),
        executed("c1", "BI_WH", "X-Small", "CAROL", at(24, 9, 0), HOUR_MS // 2),
        executed("c2", "BI_WH", "X-Small", "CAROL", at(24, 9, 40), HOUR_MS // 4),
        executed("d1", "BI_WH", "X-Small", "DAVE", at(24, 10, 0), HOUR_MS // 2),
        executed("e1", "LOAD_WH", "X-Small", "ERIN", at(24, 14, 0), HOUR_MS),
        executed("e2", "LOAD_WH", "X-Small", "ERIN", at(24, 14, 0), HOUR_MS - 60_000),
    ],
}


@pytest.fixture(scope="module")
def prod_endpoint() -> Iterator[str]:
    """One account with the planted ACCOUNT_USAGE rows."""
    with fakesnow_server() as endpoint:
        with seed_connection(endpoint) as conn:
            create_account_usage(conn)
            for view, rows in PLANTED.items():
                insert_rows(conn, f"{AU}.{view}", rows)
        yield endpoint


@pytest.fixture(scope="module")
def bare_endpoint() -> Iterator[str]:
    """An account whose role sees no ACCOUNT_USAGE: the views do not exist for it."""
    with fakesnow_server() as endpoint:
        yield endpoint


def block(account: str) -> str:
    return save_connector(f"sf-{uuid.uuid4().hex[:8]}", account)


def lines_of(result) -> dict[tuple[str, str, str], tuple[str, int, float, float]]:
    return {(c.warehouse, c.user, c.day.isoformat()): (c.method, c.queries, round(c.credits, 6), round(c.usd, 6))
            for c in result["lines"]}


# --- rules, without I/O ------------------------------------------------------------------------


def test_credit_rates_and_the_cloud_services_rule():
    assert credits_per_hour("X-Small") == 1 and credits_per_hour("MEDIUM") == 4
    assert credits_per_hour("6X-Large") == 512 and credits_per_hour("2x-large") == 32
    assert credits_per_hour("Medium", "SNOWPARK-OPTIMIZED") == 6 and credits_per_hour("huge") is None
    assert billed_cloud_services(100, 8) == 0  # within 10 % of compute: free
    assert billed_cloud_services(100, 20) == pytest.approx(10)  # only the part above 10 credits
    day = billed_by_day([MeteredHour(PROD, "A", at(24, 1), 10, 0.5), MeteredHour(PROD, "B", at(24, 2), 0, 1.5),
                         MeteredHour(PROD, "A", at(25, 1), 1, 1)])
    assert day[(PROD, date(2026, 11, 24))] == pytest.approx((10, 2.0, 1.0))
    assert day[(PROD, date(2026, 11, 25))] == pytest.approx((1, 1, 0.9))


def test_estimates_are_scaled_to_what_was_metered_and_marked():
    two_hours = [UserUsage(PROD, "W", "ERIN", date(2026, 11, 24), 2, execution_ms=2 * HOUR_MS,
                           warehouse_size="Small")]  # 4 credits of work on a warehouse that metered 3
    lines = warehouse_day_lines(PROD, "W", date(2026, 11, 24), 3.0, 0.0, [], two_hours, True, 2.0)
    assert [(c.user, c.method, c.credits, c.usd, c.estimate) for c in lines] == [
        ("ERIN", "estimated", 3.0, 6.0, True)]
    attributed_rows = [UserUsage(PROD, "W", "ALICE", date(2026, 11, 24), 1, credits=1.0)]
    lines = warehouse_day_lines(PROD, "W", date(2026, 11, 24), 3.0, 0.5, attributed_rows, two_hours, True, 2.0)
    assert [(c.user, c.method, c.credits) for c in lines] == [
        ("ALICE", "attributed", 1.0), (IDLE, "idle", 2.0), (CLOUD_SERVICES, "cloud services", 0.5)]


@pytest.mark.parametrize("bad", ["https://acme-prod.snowflakecomputing.com", "acme-prod.snowflakecomputing.com",
                                 "acme prod", ""])
def test_wrong_account_identifiers_are_refused_with_the_fix(bad):
    with pytest.raises(ConfigError, match="SnowflakeCredentials `account`.*orgname-accountname"):
        check_account_identifier(bad, "snowflake")


def test_good_account_identifiers_pass():
    for good in ("acme-prod", "myorg-analytics_eu", "xy12345", "xy12345.eu-west-1", "xy12345.us-east-2.aws",
                 "xy12345.west-europe.azure", "xy12345.us-central1.gcp"):
        check_account_identifier(good, "snowflake")


def test_login_and_grant_problems_name_the_fix():
    # The connector's documented error numbers: 390144 a key-pair JWT refused (the registered
    # public key no longer matches: a rotated or expired key), 2003 an object that does not exist
    # or is not authorized, 250001 no connection.
    jwt = access_problem(PROD, "OPS", "login", errno=390144, sqlstate="08001",
                         message="JWT token is invalid.", error_type="DatabaseError")
    assert jwt.kind == "snowflake-login-failed" and "RSA_PUBLIC_KEY" in jwt.message
    denied = access_problem(PROD, "OPS", "WAREHOUSE_METERING_HISTORY", errno=2003, sqlstate="02000",
                            message="Object 'SNOWFLAKE.ACCOUNT_USAGE.WAREHOUSE_METERING_HISTORY' does not "
                                    "exist or not authorized.", error_type="ProgrammingError",
                            grant="DATABASE ROLE SNOWFLAKE.USAGE_VIEWER")
    assert denied.kind == "snowflake-access-denied"
    assert "GRANT DATABASE ROLE SNOWFLAKE.USAGE_VIEWER TO ROLE OPS" in denied.message
    down = access_problem(PROD, None, "login", errno=250001, sqlstate=None, error_type="OperationalError",
                          message="Could not connect to Snowflake backend after 2 attempt(s).")
    assert down.kind == "snowflake-unreachable" and "`account` identifier" in down.message


# --- the flow against fakesnow ----------------------------------------------------------------


def test_exact_credits_and_dollars_per_warehouse_user_and_day(prod_endpoint, store):
    name = block(PROD)
    kwargs = dict(accounts=[name], endpoints={name: prod_endpoint}, policy=POLICY,
                  store=store._block_document_name, last_day=date(2026, 11, 24), now=at(25, 7))
    result = snowflake_cost_report(**kwargs)
    assert result["errors"] == {} and result["findings"] == []
    day = "2026-11-24"
    assert lines_of(result) == {
        ("ETL_WH", "ALICE", day): ("attributed", 2, 3.5, 10.5),
        ("ETL_WH", "BOB", day): ("attributed", 1, 1.5, 4.5),
        ("ETL_WH", IDLE, day): ("idle", 0, 1.0, 3.0),
        ("ETL_WH", CLOUD_SERVICES, day): ("cloud services", 0, 0.025, 0.075),
        ("BI_WH", "CAROL", day): ("estimated", 2, 0.75, 2.25),
        ("BI_WH", "DAVE", day): ("estimated", 1, 0.5, 1.5),
        ("BI_WH", IDLE, day): ("idle", 0, 0.75, 2.25),
        ("BI_WH", CLOUD_SERVICES, day): ("cloud services", 0, 0.075, 0.225),
        ("LOAD_WH", "ERIN", day): ("estimated", 2, 1.0, 3.0),  # 2 credits of work, 1 metered
    }
    [total] = result["totals"]
    assert (total.compute_credits, total.cloud_services_used) == pytest.approx((9.0, 1.0))
    assert total.cloud_services_billed == pytest.approx(0.1) and total.usd == pytest.approx(27.3)
    assert total.previous_usd == pytest.approx(15.0)  # Nov 23: 5 credits, its cloud services free
    assert sum(c.usd for c in result["lines"]) == pytest.approx(total.usd)  # the lines add up to the bill
    assert [(q["query_id"], q["credits"], q["estimated"]) for q in result["top_queries"]] == [
        ("q1", 3.0, False), ("q2", 1.5, False), ("e1", 1.0, True)]
    assert result["top_queries"][0]["query"] == (
        "INSERT INTO marts.orders SELECT * FROM raw.orders WHERE customer = '?'")

    def history():
        rows = store.metric_history(JOB, f"{METRIC}:{PROD}")
        return sorted((r["labels"]["warehouse"], r["subject"], r["ts"].date().isoformat(), round(r["value"], 4))
                      for r in rows)

    first = history()
    assert len(first) == 9 and ("ETL_WH", "ALICE", day, 10.5) in first
    snowflake_cost_report(**kwargs)  # re-running the same day replaces it
    assert history() == first


def test_a_price_per_account_and_attribution_off(prod_endpoint, store):
    name = block(PROD)
    policy = SnowflakeCostReportPolicy(pricing=SnowflakePricing(account_prices_usd={PROD: 2.0}),
                                       use_attribution=False, login_timeout_seconds=5)
    result = snowflake_cost_report(accounts=[name], endpoints={name: prod_endpoint}, policy=policy,
                                   store=store._block_document_name, last_day=date(2026, 11, 24), now=at(25, 7))
    etl = {c.user: (c.method, round(c.credits, 6), round(c.usd, 6)) for c in result["lines"] if c.warehouse == "ETL_WH"}
    # Estimated from execution time on a Medium (4 credits/h): 53 min for ALICE, 20 min for BOB.
    assert etl["ALICE"] == ("estimated", round(53 / 60 * 4, 6), round(53 / 60 * 4 * 2, 6))
    assert etl["BOB"] == ("estimated", round(20 / 60 * 4, 6), round(20 / 60 * 4 * 2, 6))
    assert result["totals"][0].usd == pytest.approx(9.1 * 2)


def test_an_account_that_fails_does_not_sink_the_others_and_resolves_nothing(prod_endpoint, bare_endpoint, store):
    good, unreachable, denied = block(PROD), block("acme-dev"), block("acme-sandbox")
    wrong_key = save_connector(f"sf-{uuid.uuid4().hex[:8]}", "acme-qa", passphrase="not-the-passphrase")
    result = snowflake_cost_report(
        accounts=[good, unreachable, denied, wrong_key], policy=POLICY, store=store._block_document_name,
        endpoints={good: prod_endpoint, unreachable: "fakesnow://127.0.0.1:9", denied: bare_endpoint,
                   wrong_key: prod_endpoint},
        last_day=date(2026, 11, 24), now=at(25, 7))
    assert {c.account for c in result["lines"]} == {PROD}
    assert sum(c.usd for c in result["lines"]) == pytest.approx(27.3)  # acme-prod complete
    found = {(f.kind, f.scope): f.reason for f in result["findings"]}
    assert set(found) == {("snowflake-unreachable", "acme-dev"), ("snowflake-access-denied", "acme-sandbox"),
                          ("snowflake-login-failed", "acme-qa")}
    assert "GRANT DATABASE ROLE SNOWFLAKE.USAGE_VIEWER TO ROLE OPS_MONITOR" in found[("snowflake-access-denied", "acme-sandbox")]
    assert "private_key_passphrase" in found[("snowflake-login-failed", "acme-qa")]
    assert set(result["errors"]) == {"acme-dev", "acme-sandbox", "acme-qa"}
    for reason in found.values():
        assert "not-the-passphrase" not in reason and "PRIVATE KEY" not in reason


def test_a_role_without_account_usage_fails_the_run_and_keeps_findings_open(prod_endpoint, bare_endpoint, store):
    name = block(PROD)
    first = snowflake_cost_report(accounts=[name], endpoints={name: bare_endpoint}, policy=POLICY,
                                  store=store._block_document_name, last_day=date(2026, 11, 24),
                                  now=at(25, 7), return_state=True)
    assert first.is_failed() and "could not read anything" in first.message
    assert "USAGE_VIEWER" in first.message
    [finding] = store.findings_of(JOB, "open")
    assert finding["kind"] == "snowflake-access-denied"
    # Granted: the account reads again, and only now the finding resolves.
    snowflake_cost_report(accounts=[name], endpoints={name: prod_endpoint}, policy=POLICY,
                          store=store._block_document_name, last_day=date(2026, 11, 24), now=at(25, 8))
    assert store.findings_of(JOB, "open") == [] and len(store.findings_of(JOB, "resolved")) == 1


def test_bad_input_is_refused_before_any_query(store):
    with pytest.raises(ConfigError, match="`accounts` is empty"):
        snowflake_cost_report(accounts=[], store=store._block_document_name)
    with pytest.raises(ConfigError, match="`accounts`.*does not exist"):
        snowflake_cost_report(accounts=["no-such-snowflake-block"], store=store._block_document_name)
    wrong = save_connector(f"sf-{uuid.uuid4().hex[:8]}", "https://acme-prod.snowflakecomputing.com")
    with pytest.raises(ConfigError, match="a URL: give the identifier only"):
        snowflake_cost_report(accounts=[wrong], store=store._block_document_name)
    good = block(PROD)
    with pytest.raises(ConfigError, match="`endpoints` names"):
        snowflake_cost_report(accounts=[good], endpoints={"other": "fakesnow://127.0.0.1:9"},
                              store=store._block_document_name)


def test_each_snowflake_job_role_is_generated_from_its_reads():
    """Least privilege from code: the grants come from the `@grants` of the tasks each job uses."""
    import importlib

    from deployments.snowflake_grants import grant_script, snowflake_grants

    def of(job: str, read_only: bool = False) -> set[str]:
        return snowflake_grants(importlib.import_module(f"flows.{job}"), read_only)

    usage, governance = "DATABASE ROLE SNOWFLAKE.USAGE_VIEWER", "DATABASE ROLE SNOWFLAKE.GOVERNANCE_VIEWER"
    warehouse = "USAGE ON WAREHOUSE <the connector block's warehouse>"
    assert of("snowflake_cost_report") == {usage, governance, warehouse}
    assert of("snowflake_query_cost_watch") == {usage, governance, warehouse}
    watch = of("snowflake_query_watch")
    assert "OPERATE ON WAREHOUSE <each warehouse>" in watch  # cancelling, only with apply
    assert "OPERATE ON WAREHOUSE <each warehouse>" not in of("snowflake_query_watch", read_only=True)
    assert not any("ACCOUNTADMIN" in g or "IMPORTED PRIVILEGES" in g for g in watch | of("snowflake_warehouse_hygiene"))
    script = grant_script(of("snowflake_cost_report"), "OPS_MONITOR", "DATAPLATFORM_OPS")
    assert script.splitlines() == [
        "CREATE ROLE IF NOT EXISTS OPS_MONITOR;",
        f"GRANT {governance} TO ROLE OPS_MONITOR;",
        f"GRANT {usage} TO ROLE OPS_MONITOR;",
        "GRANT USAGE ON WAREHOUSE <warehouse> TO ROLE OPS_MONITOR;  -- the connector block's warehouse",
        "GRANT ROLE OPS_MONITOR TO USER DATAPLATFORM_OPS;",
    ]
