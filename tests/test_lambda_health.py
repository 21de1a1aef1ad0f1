"""lambda-health: pure thresholds, then the flow on moto with seeded CloudWatch datapoints.

moto serves ListFunctions, tags, CloudWatch and CloudWatch Logs in process (no Docker: the
functions are never invoked, their metrics are planted with PutMetricData).
"""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from flows.lambda_health import lambda_health
from rules.findings import Severity
from rules.lambda_health import (
    OVERRIDE_TAG,
    LambdaFunction,
    LambdaMetrics,
    LambdaPolicy,
    judge_functions,
    log_scan_candidates,
    thresholds_for,
)
from tasks.aws.clients import Account
from tasks.aws.lambda_ import count_timeout_lines, get_lambda_metrics, list_functions
from tasks.aws.permissions import permissions_of
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

REGION = "us-east-1"
SCOPE = f"123456789012/{REGION}"


def fn(name: str, timeout: int = 30, **tags: str) -> LambdaFunction:
    return LambdaFunction(name=name, region=REGION, timeout_seconds=timeout, tags=tags)


# --- rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "kinds"),
    [
        (LambdaMetrics(100, 0, 0, 1_000), []),                      # healthy
        (LambdaMetrics(0, 0, 0, None), []),                         # idle
        (LambdaMetrics(100, 4, 0, 1_000), []),                      # 4% < 5%
        (LambdaMetrics(100, 5, 0, 1_000), [("lambda-errors", Severity.WARNING)]),
        (LambdaMetrics(100, 25, 0, 1_000), [("lambda-errors", Severity.CRITICAL)]),
        (LambdaMetrics(9, 9, 0, 1_000), []),                        # below min_invocations
        (LambdaMetrics(10, 0, 3, 1_000), [("lambda-throttles", Severity.WARNING)]),
        (LambdaMetrics(10, 0, 0, 28_500), [("lambda-timeouts", Severity.WARNING)]),  # 95% of 30 s
        (LambdaMetrics(10, 0, 0, 28_499), []),
    ],
)
def test_thresholds(metrics, kinds):
    found = judge_functions([fn("f")], {"f": metrics}, {}, LambdaPolicy(), SCOPE)
    assert [(f.kind, f.severity) for f in found] == kinds


def test_timeout_seen_only_in_logs():
    [found] = judge_functions([fn("f")], {"f": LambdaMetrics(3, 1, 0, 2_000)}, {"f": 1}, LambdaPolicy(), SCOPE)
    assert found.kind == "lambda-timeouts" and "1 'Task timed out' log lines" in found.reason


def test_override_tag_tunes_skips_or_is_reported():
    policy = LambdaPolicy()
    low_traffic = fn("nightly", **{OVERRIDE_TAG: "min_invocations=1 error_rate_warning=0.5 error_rate_critical=0.9"})
    [found] = judge_functions([low_traffic], {"nightly": LambdaMetrics(1, 1)}, {}, policy, SCOPE)
    assert found.kind == "lambda-errors" and found.severity == Severity.CRITICAL
    assert judge_functions([fn("noisy", **{OVERRIDE_TAG: "off"})], {"noisy": LambdaMetrics(100, 100, 9)},
                           {}, policy, SCOPE) == []
    bad = fn("typo", **{OVERRIDE_TAG: "min_invocation=1"})
    [found] = judge_functions([bad], {"typo": LambdaMetrics(10)}, {}, policy, SCOPE)
    assert found.kind == "lambda-override-invalid" and "min_invocation=1" in found.reason
    limits, problem = thresholds_for(policy, {OVERRIDE_TAG: "error_rate_warning=2"})
    assert limits == thresholds_for(policy, {})[0] and "error_rate_warning" in problem


def test_policy_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="error_rate_critical"):
        LambdaPolicy(error_rate_warning=0.5, error_rate_critical=0.1)


def test_log_scan_only_for_erring_functions_most_errors_first():
    fns = [fn("a"), fn("b"), fn("c"), fn("d", **{OVERRIDE_TAG: "off"})]
    metrics = {"a": LambdaMetrics(10, 1), "b": LambdaMetrics(10, 5), "c": LambdaMetrics(10), "d": LambdaMetrics(9, 9)}
    assert [f.name for f in log_scan_candidates(fns, metrics, LambdaPolicy(max_log_scans=5))] == ["b", "a"]
    assert [f.name for f in log_scan_candidates(fns, metrics, LambdaPolicy(max_log_scans=1))] == ["b"]
    assert log_scan_candidates(fns, metrics, LambdaPolicy(scan_timeout_logs=False)) == []


# --- moto ----------------------------------------------------------------------------------


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


def create_functions(specs: dict[str, dict]) -> None:
    """name -> {timeout, tags}; real ListFunctions / tagging data through moto."""
    role = boto3.client("iam").create_role(RoleName=f"r-{uuid.uuid4().hex[:6]}",
                                           AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam, code = boto3.client("lambda", region_name=REGION), _zip()
    for name, spec in specs.items():
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                            Code={"ZipFile": code}, Timeout=spec.get("timeout", 30),
                            Architectures=[spec.get("arch", "x86_64")], Tags=spec.get("tags", {}))


def plant(name: str, at: datetime, **values: float) -> None:
    """CloudWatch datapoints for a function, e.g. Invocations=100, Duration=2000 (ms)."""
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": "FunctionName", "Value": name}],
         "Timestamp": at, "Value": value} for metric, value in values.items()])


def log_timeouts(name: str, at: datetime, count: int) -> None:
    logs = boto3.client("logs", region_name=REGION)
    group = f"/aws/lambda/{name}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/11/25/[$LATEST]abc")
    ms = int(at.timestamp() * 1000)
    events = [{"timestamp": ms + i, "message": f"2026-11-25T10:00:00Z req-{i} Task timed out after 60.00 seconds"}
              for i in range(count)] + [{"timestamp": ms + count, "message": "END RequestId: x"}]
    logs.put_log_events(logGroupName=group, logStreamName="2026/11/25/[$LATEST]abc", logEvents=events)


@pytest.fixture
def aws_block(aws) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name=REGION).save(name)
    return name


def plant_unhealthy_functions(now: datetime) -> None:
    """Eight functions: healthy, idle, ignored, and five with errors, throttles or timeouts (UNHEALTHY)."""
    create_functions({
        "healthy": {}, "erroring": {}, "throttled": {}, "slow": {"timeout": 10},
        "logged-timeouts": {"timeout": 60}, "idle": {},
        "ignored": {"tags": {OVERRIDE_TAG: "off"}},
        "other-team": {"tags": {"team": "b"}},
    })
    at = now - timedelta(minutes=5)
    plant("healthy", at, Invocations=500, Errors=2, Throttles=0, Duration=800)
    plant("erroring", at, Invocations=40, Errors=12, Duration=900)
    plant("throttled", at, Invocations=200, Throttles=7, Duration=100)
    plant("slow", at, Invocations=20, Duration=9_800)
    plant("logged-timeouts", at, Invocations=30, Errors=1, Duration=1_200)  # short runs, one timeout
    log_timeouts("logged-timeouts", at, 1)
    plant("ignored", at, Invocations=50, Errors=50)
    plant("other-team", at, Invocations=50, Errors=50)


UNHEALTHY = [
    ("lambda-errors", "erroring", "critical"),
    ("lambda-errors", "other-team", "critical"),
    ("lambda-throttles", "throttled", "warning"),
    ("lambda-timeouts", "logged-timeouts", "warning"),
    ("lambda-timeouts", "slow", "warning"),
]


def test_flow_finds_exactly_the_unhealthy_functions_then_resolves(aws_block, store):
    now = datetime.now(timezone.utc)
    plant_unhealthy_functions(now)
    found = lambda_health(regions=[REGION], tag_filter=None, aws_credentials=aws_block,
                          store=store._block_document_name, now=now).findings
    got = sorted((f.kind, f.resource_id, f.severity.value) for f in found)
    assert got == UNHEALTHY
    erroring = next(f for f in found if f.resource_id == "erroring")
    assert erroring.scope == SCOPE and "12 of 40 invocations failed (30.0%)" in erroring.reason
    assert erroring.url.endswith("#/functions/erroring")
    assert {r["subject"] for r in store.metric_history("lambda-health", "lambda.errors")} == {
        f"{SCOPE}/{n}" for n in ("healthy", "erroring", "throttled", "slow", "logged-timeouts", "ignored", "other-team")}
    assert len(store.findings_of("lambda-health", "open")) == 5

    # Filtered by tag, only that team's function is judged; an hour later everything is quiet.
    only_b = lambda_health(regions=[REGION], tag_filter={"team": "b"}, aws_credentials=aws_block,
                           store=store._block_document_name, now=now).findings
    assert [(f.kind, f.resource_id) for f in only_b] == [("lambda-errors", "other-team")]
    assert lambda_health(regions=[REGION], aws_credentials=aws_block, store=store._block_document_name,
                         now=now + timedelta(hours=1)).findings == []
    assert store.findings_of("lambda-health", "open") == []


def test_600_functions_take_one_get_metric_data_call_per_500_series(aws):
    """2,400 series (4 per function) -> 5 GetMetricData calls, counted on the wire by botocore."""
    create_functions({f"fn-{i:03d}": {"arch": "arm64" if i % 3 else "x86_64"} for i in range(600)})
    session = boto3.Session(region_name=REGION)
    calls: list[str] = []
    session.events.register("before-call.cloudwatch.GetMetricData", lambda **kw: calls.append("gmd"))
    account = Account(AwsCredentials(region_name=REGION), _session=session)
    now = datetime.now(timezone.utc)
    plant("fn-599", now - timedelta(minutes=3), Invocations=10, Errors=10)

    functions = list_functions.fn(account, REGION)
    assert len(functions) == 600 and functions[1].architectures == ("arm64",)
    assert functions[0].timeout_seconds == 30 and functions[0].log_group == "/aws/lambda/fn-000"
    metrics, reported = get_lambda_metrics.fn(account, REGION, [f.name for f in functions],
                                              now - timedelta(minutes=15), now)
    batches = -(-600 * 4 // 500)
    assert len(calls) == reported == batches == 5  # at most 2 per batch required; paging never needed
    assert metrics["fn-599"] == LambdaMetrics(10, 10, 0, None)
    assert metrics["fn-000"] == LambdaMetrics(0, 0, 0, None)


def test_timeout_log_scan_counts_lines_and_tolerates_missing_groups(aws):
    now = datetime.now(timezone.utc)
    log_timeouts("etl", now - timedelta(minutes=2), 3)
    account = Account(AwsCredentials(region_name=REGION))
    counts = count_timeout_lines.fn(account, REGION, [fn("etl"), fn("no-logs")],
                                    now - timedelta(minutes=15), now)
    assert counts == {"etl": 3, "no-logs": 0}


def test_declared_permissions():
    assert permissions_of([list_functions, get_lambda_metrics, count_timeout_lines]) == {
        "lambda:ListFunctions", "tag:GetResources", "cloudwatch:GetMetricData", "logs:FilterLogEvents"}


@scenario_for("lambda-health")
def least_privilege_scenario(aws):
    now = datetime.now(timezone.utc)
    plant_unhealthy_functions(now)
    return Scenario(lambda_health, plain_creds(), dict(regions=["us-east-1"], now=now),
                    {r for _, r, _ in UNHEALTHY}, drop="logs:FilterLogEvents")
