"""graviton-trial: before/after windows of resources moved to Graviton, on moto with seeded
CloudWatch data (a planted improvement, a planted regression, an unchanged database found through
graviton-advisor's history, a move too recent to judge, one with no metrics), and the pure rules."""

import io
import uuid
import zipfile
from datetime import date, datetime, time, timedelta, timezone

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect_aws import AwsCredentials

from rules.graviton_trial import (
    DAYS_PER_MONTH,
    MOVED_AT_TAG,
    PREVIOUS_TYPE_TAG,
    REGRESSION,
    SAVING,
    Move,
    ResolvedAdvice,
    Resource,
    TrialPolicy,
    find_moves,
    is_graviton,
    judge_trial,
)
from rules.pricing import BUNDLED
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

H = 730
X86_GBS, ARM_GBS = 0.0000166667, 0.0000133334


def _at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone.utc)


def _days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=k) for k in range(n)]


# --- pure rules -------------------------------------------------------------------------------


def test_graviton_types_are_recognised():
    assert is_graviton(Resource("ec2", "i", "r", "m7g.large"))
    assert is_graviton(Resource("ec2", "i", "r", "c7gn.xlarge"))
    assert is_graviton(Resource("rds", "d", "r", "db.r6gd.large"))
    assert is_graviton(Resource("lambda", "f", "r", "arm64"))
    assert not is_graviton(Resource("ec2", "i", "r", "g5.xlarge"))  # an x86 GPU instance
    assert not is_graviton(Resource("ec2", "i", "r", "m5d.large"))
    assert not is_graviton(Resource("lambda", "f", "r", "x86_64"))


def test_a_tag_wins_over_history_and_bad_tags_are_named():
    day = date(2026, 11, 20)
    advice = [ResolvedAdvice("ec2", "i-1", "m5.large", "m7g.large", _at(day, 6), _at(day + timedelta(days=1), 6)),
              ResolvedAdvice("ec2", "i-2", "m5.large", "m7g.large", _at(day, 6), _at(day + timedelta(days=1), 6))]
    moves, notes = find_moves([
        Resource("ec2", "i-1", "r", "m7g.large", {MOVED_AT_TAG: "2026-11-25T10:00:00Z"}),
        Resource("ec2", "i-2", "r", "m7g.large"),
        Resource("ec2", "i-3", "r", "m5.large", {MOVED_AT_TAG: "2026-11-25"}),
        Resource("ec2", "i-4", "r", "m7g.large", {MOVED_AT_TAG: "last week"}),
        Resource("ec2", "i-5", "r", "m5.large"),
    ], advice)
    by_id = {m.resource.resource_id: m for m in moves}
    assert set(by_id) == {"i-1", "i-2"}
    assert (by_id["i-1"].before_end, by_id["i-1"].after_start, by_id["i-1"].previous) == (
        date(2026, 11, 25), date(2026, 11, 26), "m5.large")  # the previous type from the advice
    # History: last seen on x86 on the 20th, gone on the 21st: the after window starts on the 22nd.
    assert (by_id["i-2"].before_end, by_id["i-2"].after_start) == (day, date(2026, 11, 22))
    assert notes == ["i-3: tagged as moved to Graviton on 2026-11-25 but runs m5.large: no trial.",
                     "i-4: tag graviton-migrated-at='last week' is not an ISO date (like 2026-11-20): no trial."]


def _ec2_move(day: date) -> Move:
    return Move(Resource("ec2", "i-1", "us-east-1", "m7g.large", {}), "m5.large", day, day + timedelta(days=1), "tag")


def test_cpu_is_judged_at_equal_throughput():
    day, policy = date(2026, 11, 20), TrialPolicy()
    now = _at(day + timedelta(days=9))
    before, after = _days(day - timedelta(days=7), 7), _days(day + timedelta(days=1), 7)
    # CPU up 50 % while the traffic doubled: less CPU per byte, no regression.
    busier = {"cpu": [(_at(d), 20.0) for d in before] + [(_at(d), 30.0) for d in after],
              "net_in": [(_at(d), 1e9) for d in before] + [(_at(d), 2e9) for d in after],
              "net_out": [(_at(d), 0.0) for d in before + after]}
    trial = judge_trial(_ec2_move(day), busier, BUNDLED, policy, now)
    assert trial.verdict == "improved" and trial.saving == round((0.096 - 0.0816) * H, 2)
    # CPU up 50 % at the same traffic: a regression, with the numbers.
    same = dict(busier, net_in=[(_at(d), 1e9) for d in before + after])
    trial = judge_trial(_ec2_move(day), same, BUNDLED, policy, now)
    assert trial.verdict == "regressed"
    assert trial.regressions == ("CPU 20.0 -> 30.0 % at equal network in+out (30.0 % measured) (+50 %), "
                                 "worse by more than 20 %",)
    # The same rise, but below min_cpu_percent: noise.
    quiet = dict(same, cpu=[(_at(d), 2.0) for d in before] + [(_at(d), 3.0) for d in after])
    assert judge_trial(_ec2_move(day), quiet, BUNDLED, policy, now).verdict == "improved"


def test_too_few_days_of_data_is_no_verdict():
    day, policy = date(2026, 11, 20), TrialPolicy(min_days_with_data=3)
    sparse = {"cpu": [(_at(day - timedelta(days=1)), 20.0), (_at(day + timedelta(days=2)), 20.0)]}
    trial = judge_trial(_ec2_move(day), sparse, BUNDLED, policy, _at(day + timedelta(days=9)))
    assert trial.verdict == "no-data" and "no verdict" in trial.why


def test_policy_rejects_more_data_days_than_the_window():
    with pytest.raises(ValueError, match="min_days_with_data"):
        TrialPolicy(window_days=5, min_days_with_data=6)


# --- the job on moto --------------------------------------------------------------------------


def _zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


def _put(cw, namespace: str, metric: str, dimension: tuple[str, str], values: dict[date, float]) -> None:
    cw.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
         "Timestamp": _at(day), "Value": value} for day, value in values.items()])


def _before_after(move_day: date, before: float, after: float, move_day_value: float | None = None,
                  after_start: date | None = None, before_end: date | None = None) -> dict[date, float]:
    before_end = before_end or move_day
    after_start = after_start or move_day + timedelta(days=1)
    values = {d: before for d in _days(before_end - timedelta(days=7), 7)}
    values.update({d: after for d in _days(after_start, 7)})
    if move_day_value is not None:
        values[move_day] = move_day_value
    return values


@pytest.fixture
def planted_moves(aws):
    """Moved resources with seeded metrics; -> (ids, creds, now, move day)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    moved = now.date() - timedelta(days=10)  # before: moved-7..moved-1, after: moved+1..moved+7
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]

    def instance(instance_type: str, tags: dict[str, str]) -> str:
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )["Instances"][0]["InstanceId"]

    ids = {
        "improved": instance("m7g.large", {MOVED_AT_TAG: moved.isoformat(), PREVIOUS_TYPE_TAG: "m5.large"}),
        "too-recent": instance("c7g.large", {MOVED_AT_TAG: (now.date() - timedelta(days=3)).isoformat(),
                                             PREVIOUS_TYPE_TAG: "c5.large"}),
        "no-metrics": instance("t4g.micro", {MOVED_AT_TAG: moved.isoformat(), PREVIOUS_TYPE_TAG: "t3.micro"}),
    }
    boto3.client("rds", region_name="us-east-1").create_db_instance(
        DBInstanceIdentifier="orders-db", DBInstanceClass="db.m5.large", Engine="postgres",
        MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20)
    role = boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda", region_name="us-east-1").create_function(
        FunctionName="ingest", Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": _zip()}, MemorySize=2048, Architectures=["arm64"], Tags={MOVED_AT_TAG: moved.isoformat()})
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    ec2_dim = ("InstanceId", ids["improved"])
    # Planted improvement: CPU 40 % -> 30 % at the same 10 GB a day; the move day's spike is skipped.
    _put(cw, "AWS/EC2", "CPUUtilization", ec2_dim, _before_after(moved, 40.0, 30.0, move_day_value=95.0))
    _put(cw, "AWS/EC2", "NetworkIn", ec2_dim, _before_after(moved, 6e9, 6e9))
    _put(cw, "AWS/EC2", "NetworkOut", ec2_dim, _before_after(moved, 4e9, 4e9))
    # The too-recent instance has data before and some after: still no verdict.
    _put(cw, "AWS/EC2", "CPUUtilization", ("InstanceId", ids["too-recent"]),
         _before_after(now.date() - timedelta(days=3), 40.0, 40.0))
    # Planted regression: 100,000 invocations a day, Duration 200 ms -> 300 ms.
    fn_dim = ("FunctionName", "ingest")
    _put(cw, "AWS/Lambda", "Invocations", fn_dim, _before_after(moved, 100_000, 100_000))
    _put(cw, "AWS/Lambda", "Duration", fn_dim, _before_after(moved, 100_000 * 200.0, 100_000 * 300.0))
    # The database: unchanged; its windows follow graviton-advisor's history (see the test).
    db_dim = ("DBInstanceIdentifier", "orders-db")
    windows = dict(before_end=moved - timedelta(days=1), after_start=moved + timedelta(days=1))
    _put(cw, "AWS/RDS", "CPUUtilization", db_dim, _before_after(moved, 30.0, 30.0, **windows))
    _put(cw, "AWS/RDS", "ReadLatency", db_dim, _before_after(moved, 0.002, 0.002, **windows))
    _put(cw, "AWS/RDS", "ReadIOPS", db_dim, _before_after(moved, 500.0, 500.0, **windows))
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return ids, creds, now, moved


def test_trial_reports_saving_regression_and_no_verdicts(planted_moves, store):
    from flows.graviton_advisor import graviton_advisor
    from flows.graviton_trial import graviton_trial

    ids, creds, now, moved = planted_moves
    params = dict(aws_credentials=creds, store=store._block_document_name, regions=["us-east-1"])
    # History: graviton-advisor advised orders-db the day before the move; after the class change
    # its finding resolved. No tag on the database: the store is how the trial knows.
    day_before = _at(moved - timedelta(days=1), 6)
    assert {f.resource_id for f in graviton_advisor(**params, now=day_before).findings} == {"orders-db"}
    boto3.client("rds", region_name="us-east-1").modify_db_instance(
        DBInstanceIdentifier="orders-db", DBInstanceClass="db.m7g.large", ApplyImmediately=True)
    assert graviton_advisor(**params, now=_at(moved, 6)).findings == []

    state = graviton_trial(**params, now=now, return_state=True)
    result = state.result()
    got = {f.resource_id: f for f in result.findings}
    assert set(got) == {ids["improved"], "ingest", "orders-db"}

    improved = got[ids["improved"]]
    assert (improved.kind, improved.severity) == (SAVING, "info")
    assert improved.monthly_cost_usd == round((0.096 - 0.0816) * H, 2) == 10.51
    assert improved.reason == (
        f"m5.large -> m7g.large (tag {MOVED_AT_TAG}={moved}): saves $10.51/month ($70.08 -> $59.57/month). "
        "7 days before vs after: CPU 40.0 -> 30.0 % (-25 %); network in+out 10.0 -> 10.0 GB/day (+0 %).")

    regressed = got["ingest"]
    assert (regressed.kind, regressed.severity) == (REGRESSION, "warning")
    calls_gb = 100_000 * DAYS_PER_MONTH * 2  # invocations a month x 2 GB
    extra = round(0.3 * calls_gb * ARM_GBS - 0.2 * calls_gb * X86_GBS, 2)
    assert extra == 4.06
    assert regressed.numbers["saving_monthly_usd"] == -extra and regressed.monthly_cost_usd is None
    assert regressed.reason.startswith(
        "REGRESSION: Duration 200.0 -> 300.0 ms (+50 %), worse by more than 20 %. "
        f"x86_64 -> arm64 (tag {MOVED_AT_TAG}={moved}): costs $4.06/month more ($20.28 -> $24.33/month at "
        "3,041,667 invocations a month of 2048 MB).")

    db = got["orders-db"]
    assert (db.kind, db.severity, db.monthly_cost_usd) == (SAVING, "info", round((0.178 - 0.168) * H, 2))
    assert db.numbers["source"].startswith("graviton-advisor advised db.m5.large -> db.m7g.large")
    assert "ReadLatency 2.0 -> 2.0 ms (+0 %)" in db.reason and "REGRESSION" not in db.reason
    assert (db.numbers["latency_measure"], db.numbers["latency_before"], db.numbers["latency_after"]) == (
        "ReadLatency (ms)", 2.0, 2.0)

    verdicts = {t.move.resource.resource_id: t for t in result.details}
    assert verdicts[ids["too-recent"]].verdict == "pending"
    complete_on = now.date() - timedelta(days=3) + timedelta(days=8)
    assert f"is complete on {complete_on}: no verdict yet" in verdicts[ids["too-recent"]].why
    assert verdicts[ids["no-metrics"]].verdict == "no-data"
    assert "no CloudWatch data" in verdicts[ids["no-metrics"]].why
    assert result.monthly_usd == pytest.approx(10.51 + 7.30)
    with get_client(sync_client=True) as client:  # the report says why there is no verdict
        report = "\n".join(str(a.data) for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))))
    assert verdicts[ids["too-recent"]].why in report and verdicts[ids["no-metrics"]].why in report
    open_ = {(f["kind"], f["resource_id"], f["severity"]) for f in store.findings_of("graviton-trial", "open")}
    assert open_ == {(SAVING, ids["improved"], "info"), (REGRESSION, "ingest", "warning"),
                     (SAVING, "orders-db", "info")}


def test_every_move_of_a_region_is_read_in_batches_of_500_series(aws, monkeypatch):
    import tasks.aws.graviton_metrics as metrics
    from tasks.aws.clients import Account

    calls = []

    def counted(*args, **kwargs):
        data = get_metric_data(*args, **kwargs)
        calls.append(data.calls)
        return data

    get_metric_data = metrics.get_metric_data
    monkeypatch.setattr(metrics, "get_metric_data", counted)
    moved = [("ec2", f"i-{n:04d}") for n in range(150)] + [("lambda", f"fn-{n}") for n in range(100)]
    found = metrics.before_after_metrics.fn(Account(AwsCredentials(region_name="us-east-1")), "us-east-1", moved,
                                            date(2026, 11, 1), date(2026, 11, 29))
    assert calls == [2]  # 150 x 3 + 100 x 2 = 650 series: two GetMetricData calls, not 250
    assert set(found["ec2"]["i-0000"]) == {"cpu", "net_in", "net_out"}
    assert set(found["lambda"]["fn-99"]) == {"duration", "invocations"}


def test_trial_needs_read_permissions_only():
    import flows.graviton_trial as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    assert flow_actions(module) == flow_actions(module, read_only=True) == {
        "ec2:DescribeInstances", "rds:DescribeDBInstances", "lambda:ListFunctions", "tag:GetResources",
        "cloudwatch:GetMetricData", "pricing:GetProducts"} | TARGETS


@scenario_for("graviton-trial")
def least_privilege_scenario(planted_moves):
    from flows.graviton_trial import graviton_trial

    ids, creds, now, _ = planted_moves
    return Scenario(graviton_trial, creds, dict(regions=["us-east-1"], now=now), {ids["improved"], "ingest"},
                    drop="rds:DescribeDBInstances")
