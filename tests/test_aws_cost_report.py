"""aws-cost-report: the rules on plain lines, then the flow on moto's Cost Explorer.

moto implements GetCostAndUsage only as a queue of canned results (POSTed to its
`/moto-api/static/ce/cost-and-usage-results`, each handed to the next distinct request): the
test queues the exact pages a real Cost Explorer would return for the planted bill, in the
order the job asks (service x linked account, two pages; then the `team` tag). Everything after
the API call is the job's own. GetCostForecast is not in moto (nor used: the forecast is a
run rate, said as such).

The planted bill, 2026-10-01 .. 2026-11-17, the run on Wednesday 2026-11-18:
- account 111111111111, EC2: $100 a weekday, $40 a weekend day, $300 every Monday (a weekly batch);
- account 222222222222, EC2: $20 a day, but $220 on Tuesday 2026-11-17: the one anomaly;
- account 111111111111, S3: $10 a day; CloudWatch: $10 a day until a log retention was set on
  2026-11-05 (claimed $90/month), $7 a day after.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
import requests
from prefect_aws import AwsCredentials

from flows.aws_cost_report import JOB, METRIC, aws_cost_report
from rules.aws_cost import (
    TOTAL,
    AppliedAction,
    AwsCostPolicy,
    CostLine,
    anomalies,
    month_to_date,
    realised_savings,
    run_rate_forecast,
    weekday_baseline,
)
from rules.findings import Finding
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

TODAY = date(2026, 11, 18)  # a Wednesday
NOW = datetime(2026, 11, 18, 6, 30, tzinfo=timezone.utc)
START = date(2026, 10, 1)
EC2, S3, CW = "Amazon Elastic Compute Cloud - Compute", "Amazon Simple Storage Service", "AmazonCloudWatch"
A1, A2 = "111111111111", "222222222222"
ACTION_DAY = date(2026, 11, 5)


def planted_cost(day: date) -> dict[tuple[str, str], float]:
    """(service, account) -> USD of `day` in the planted bill (see the module docstring)."""
    weekday = day.weekday()
    ec2 = 300.0 if weekday == 0 else (40.0 if weekday >= 5 else 100.0)
    return {(EC2, A1): ec2, (EC2, A2): 220.0 if day == date(2026, 11, 17) else 20.0, (S3, A1): 10.0,
            (CW, A1): 10.0 if day <= ACTION_DAY else 7.0}


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def lines(start: date = START, end: date = TODAY) -> list[CostLine]:
    return [CostLine(d, service, account, usd) for d in days(start, end)
            for (service, account), usd in planted_cost(d).items()]


# --- rules ----------------------------------------------------------------------------------


def test_month_to_date_against_the_same_days_of_last_month():
    rows = {r["service"]: r for r in month_to_date(lines(), TODAY)}
    expected = {}
    for service in (EC2, S3, CW):
        now = sum(u for d in days(date(2026, 11, 1), TODAY) for (s, _), u in planted_cost(d).items() if s == service)
        before = sum(u for d in days(date(2026, 10, 1), date(2026, 10, 18)) for (s, _), u in planted_cost(d).items()
                     if s == service)
        expected[service] = (round(now, 2), round(before, 2))
    assert {s: (r["month_to_date_usd"], r["same_days_last_month_usd"]) for s, r in rows.items() if s != TOTAL} == expected
    assert rows[TOTAL]["month_to_date_usd"] == round(sum(v[0] for v in expected.values()), 2)


def test_run_rate_forecast_adds_the_last_weeks_average_for_the_days_left():
    spent = sum(sum(planted_cost(d).values()) for d in days(date(2026, 11, 1), TODAY))
    last_week = sum(sum(planted_cost(d).values()) for d in days(date(2026, 11, 11), TODAY)) / 7
    assert run_rate_forecast(lines(), TODAY) == round(spent + last_week * 13, 2)  # Nov 18 .. 30


def test_the_baseline_is_the_same_weekday_so_a_weekly_batch_is_no_anomaly():
    series = {d: u for d in days(START, TODAY) for (s, a), u in planted_cost(d).items() if (s, a) == (EC2, A1)}
    assert weekday_baseline(series, date(2026, 11, 16), 4) == 300.0  # Mondays
    assert weekday_baseline(series, date(2026, 11, 17), 4) == 100.0  # Tuesdays
    assert weekday_baseline(series, date(2026, 10, 8), 4) is None  # only one Thursday before it


def test_one_anomaly_names_the_service_and_the_account_that_moved():
    found = anomalies(lines(), "123456789012", TODAY, AwsCostPolicy())
    assert [(f.resource_id, f.severity.value) for f in found] == [
        ("2026-11-17/(all services)", "critical"), ("2026-11-17/Amazon Elastic Compute Cloud - Compute", "critical")]
    ec2 = found[1]
    assert ec2.reason == ("Amazon Elastic Compute Cloud - Compute cost $320.00 on Tue 2026-11-17, against $120.00 on the "
                          "same weekday before (median of 4 weeks): +$200.00 (+167%); accounts that moved: "
                          "222222222222 +200.00")
    assert ec2.numbers["accounts"] == {A2: 200.0}
    # A smaller spike under the USD floor stays quiet.
    assert anomalies(lines(), "123456789012", TODAY, AwsCostPolicy(anomaly_min_usd=500)) == []


def test_realised_savings_compare_the_bill_line_before_and_after_with_the_claim():
    applied = AppliedAction("waste-checks", "set-log-retention", "arn:log-group:/ingest", f"{A1}/us-east-1",
                            datetime(2026, 11, 5, 10, tzinfo=timezone.utc), "log-group-without-retention", 90.0)
    unknown = AppliedAction("dev-parking", "stop", "i-1", f"{A1}/us-east-1", datetime(2026, 11, 6, tzinfo=timezone.utc))
    late = AppliedAction("waste-checks", "switch-to-on-demand", "arn:table/t", f"{A1}/us-east-1",
                         datetime(2026, 11, 16, tzinfo=timezone.utc), "dynamodb-underused-provisioned", 30.0)
    rows = [s.row() for s in realised_savings([applied, unknown, late], lines(), TODAY, AwsCostPolicy())]
    assert rows[0] == {
        "applied": "2026-11-05", "job": "waste-checks", "action": "set-log-retention", "resource": "arn:log-group:/ingest",
        "claimed_monthly_usd": 90.0, "bill_line": f"{A1} AmazonCloudWatch", "before_usd_per_day": 10.0,
        "after_usd_per_day": 7.0, "realised_monthly_usd": 91.25, "realised_share": "101%", "note": ""}
    assert (rows[1]["realised_monthly_usd"], rows[1]["note"]) == (None, "no bill line known for this action")
    assert (rows[2]["realised_monthly_usd"], rows[2]["note"]) == (None, "1 days of bill since; the saving shows after 3")


# --- moto -----------------------------------------------------------------------------------


def _result(day: date, groups: list[tuple[list[str], float]]) -> dict:
    return {"TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()},
            "Total": {}, "Estimated": False,
            "Groups": [{"Keys": keys, "Metrics": {"UnblendedCost": {"Amount": f"{usd:.4f}", "Unit": "USD"}}}
                       for keys, usd in groups]}


def queue_bill(end: date = TODAY) -> None:
    """The pages Cost Explorer answers for the planted bill up to `end`, in the order the job asks."""
    by_service = {d: [([s, a], u) for (s, a), u in planted_cost(d).items()] for d in days(START, end)}
    october, november = days(START, date(2026, 11, 1)), days(date(2026, 11, 1), end)
    by_team = {d: [(["team$data"], planted_cost(d)[(EC2, A1)]), (["team$"], sum(planted_cost(d).values())
                                                                  - planted_cost(d)[(EC2, A1)])]
               for d in days(START, end)}
    results = [
        {"ResultsByTime": [_result(d, by_service[d]) for d in october], "NextPageToken": "november",
         "DimensionValueAttributes": []},
        {"ResultsByTime": [_result(d, by_service[d]) for d in november], "DimensionValueAttributes": []},
        {"ResultsByTime": [_result(d, by_team[d]) for d in days(START, end)], "DimensionValueAttributes": []},
    ]
    answer = requests.post("http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results",
                           json={"results": results}, timeout=10)
    assert answer.status_code == 201


def record_retention_applied(store) -> None:
    """What waste-checks leaves in the store when a person approved a log retention on Nov 5."""
    at = datetime(2026, 11, 5, 10, tzinfo=timezone.utc)
    finding = Finding(kind="log-group-without-retention", resource_id="arn:aws:logs:us-east-1:111111111111:log-group:/ingest",
                      scope=f"{A1}/us-east-1", reason="log group keeps 3,000 GiB forever", monthly_cost_usd=90.0)
    store.claim_findings("waste-checks", [finding], at - timedelta(hours=4))
    store.record_action("waste-checks", action="set-log-retention", resource_id=finding.resource_id,
                        scope=finding.scope, dry_run=False, outcome="done", now=at)


@pytest.fixture
def creds(aws) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(name)
    return name


POLICY = AwsCostPolicy(tag_keys=["team"])


def test_the_bill_is_kept_reported_and_its_anomaly_announced_once(creds, store):
    queue_bill()
    record_retention_applied(store)
    params = dict(policy=POLICY, aws_credentials=creds, store=store._block_document_name)
    first = aws_cost_report(now=NOW, **params)
    assert first["errors"] == {}
    # Every planted day, service and account is in the store exactly as Cost Explorer said.
    history = {(r["ts"].date(), r["subject"]): r["value"] for r in store.metric_history(JOB, f"{METRIC}:123456789012")}
    assert history == {(d, f"{a}/{s}"): u for d in days(START, TODAY) for (s, a), u in planted_cost(d).items()}
    tags = {(r["ts"].date(), r["subject"]): r["value"]
            for r in store.metric_history(JOB, f"{METRIC}_by_tag:123456789012:team")}
    assert tags[(date(2026, 11, 16), "team=data")] == 300.0 and tags[(date(2026, 11, 16), "team=(untagged)")] == 37.0
    # Month to date: the same rows the rule gives for the same lines.
    assert first["month_to_date"] == [{"account": "123456789012", **row} for row in month_to_date(lines(), TODAY)]
    assert [f.resource_id for f in first["announced"]] == ["2026-11-17/(all services)",
                                                           "2026-11-17/Amazon Elastic Compute Cloud - Compute"]
    [saving] = first["savings"]
    assert (saving["claimed_monthly_usd"], saving["realised_monthly_usd"], saving["realised_share"]) == (90.0, 91.25, "101%")

    # The same run again, and the next day's (a day more of bill): the anomaly is still there and
    # announced no more.
    assert aws_cost_report(now=NOW, **params)["announced"] == []
    queue_bill(end=TODAY + timedelta(days=1))
    assert aws_cost_report(now=NOW + timedelta(days=1), **params)["announced"] == []
    assert {f["resource_id"] for f in store.findings_of(JOB, "open")} == {
        "2026-11-17/(all services)", "2026-11-17/Amazon Elastic Compute Cloud - Compute"}


def test_bad_input_fails_before_any_call(creds, store):
    from rules.config import ConfigError

    with pytest.raises(ConfigError, match="role_arns"):
        aws_cost_report.fn(role_arns=["nope"], aws_credentials=creds, store=store._block_document_name)


@scenario_for("aws-cost-report")
def least_privilege_scenario(aws):
    queue_bill()
    return Scenario(aws_cost_report, plain_creds(), dict(policy=POLICY, now=NOW),
                    {"2026-11-17/(all services)", "2026-11-17/Amazon Elastic Compute Cloud - Compute"},
                    drop="ce:GetCostAndUsage")
