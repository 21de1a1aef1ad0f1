"""dev-parking: the transition rules (pure, fixed `now`) and the flow on moto."""

import uuid
from datetime import date, datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from rules.parking import Memory, Parkable, ParkingPolicy, memory_key, plan_parking
from rules.pricing import BUNDLED
from tests.approvals import run_and_answer
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

UTC = timezone.utc
WED_NIGHT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 21:00 in Seoul, off-hours
THU_MORNING = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # 08:30 in Seoul, on-hours
OFF_AT = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # Wednesday 20:00 in Seoul
SCHEDULE = {"dataplatform-ops:schedule": "weekdays 08:00-20:00 Asia/Seoul"}
# 30 days from WED_NIGHT: 22 weekdays x 12 h on -> scaled to 730 h, 462.3 h parked.
PARKED = 462.3


def ec2(state="running", tags=SCHEDULE, **kw):
    return Parkable("ec2", kw.pop("rid", "i-1"), "us-east-1", state, ("ec2:m5.large:hour",), dict(tags), **kw)


def plan(resources, now=WED_NIGHT, memory=None, policy=None, calendars=None):
    return plan_parking(resources, policy or ParkingPolicy(), now, memory or {}, calendars or {}, BUNDLED)


def test_off_transition_stops_and_reports_hours_and_dollars():
    [item] = plan([ec2()]).items
    assert item.action == "stop" and item.remember == Memory(OFF_AT, "stop", WED_NIGHT)
    assert item.hours_parked_month == PARKED
    assert item.saved_month_usd == pytest.approx(0.096 * PARKED, abs=0.01)


def test_started_by_hand_after_the_transition_stays_up():
    memory = {memory_key(ec2()): Memory(OFF_AT, "stop", OFF_AT)}
    [item] = plan([ec2()], now=WED_NIGHT + timedelta(hours=2), memory=memory).items
    assert item.action is None and "started by hand" in item.reason
    # The next off transition (Thursday 20:00 KST) parks it again.
    [item] = plan([ec2()], now=datetime(2026, 11, 26, 11, 15, tzinfo=UTC), memory=memory).items
    assert item.action == "stop"


def test_on_transition_starts_only_once():
    stopped = ec2(state="stopped")
    [item] = plan([stopped], now=THU_MORNING).items
    assert item.action == "start"
    memory = {memory_key(stopped): item.remember}
    [again] = plan([stopped], now=THU_MORNING + timedelta(minutes=15), memory=memory).items
    assert again.action is None and "stopped by hand" in again.reason


def test_rds_is_stopped_again_after_the_seven_day_auto_start():
    db = Parkable("rds", "db-1", "us-east-1", "available", ("rds:db.m5.large:hour",),
                  {"env": "dev"})
    policy = ParkingPolicy(default_schedules={"dev": "weekdays 08:00-20:00 UTC"},
                           holidays=[date(2026, 12, d) for d in range(21, 32)])
    stopped_at = datetime(2026, 12, 18, 20, 0, tzinfo=UTC)  # Friday, before a holiday fortnight
    memory = {memory_key(db): Memory(stopped_at, "stop", stopped_at)}
    [early] = plan([db], now=stopped_at + timedelta(days=3), memory=memory, policy=policy).items
    assert early.action is None  # a person started it: leave it
    [item] = plan([db], now=stopped_at + timedelta(days=7, minutes=10), memory=memory, policy=policy).items
    assert item.action == "stop" and "auto-start" in item.reason
    # The same rule never applies to EC2, which does not restart itself.
    vm = ec2(tags={"env": "dev"})
    [ec2_item] = plan([vm], now=stopped_at + timedelta(days=7, minutes=10),
                      memory={memory_key(vm): Memory(stopped_at, "stop", stopped_at)}, policy=policy).items
    assert ec2_item.action is None


def test_override_keeps_it_up_tonight():
    tags = {**SCHEDULE, "dataplatform-ops:up-until": "2026-11-25T23:30"}
    [item] = plan([ec2(tags=tags)]).items
    assert item.action is None and "kept up until 2026-11-25 14:30 UTC" in item.reason
    [later] = plan([ec2(tags=tags)], now=datetime(2026, 11, 25, 14, 45, tzinfo=UTC)).items
    assert later.action == "stop"


def test_holiday_calendar_from_the_tag():
    tags = {"dataplatform-ops:schedule": "weekdays 08:00-20:00 Asia/Seoul holidays=kr"}
    [item] = plan([ec2(tags=tags)], now=THU_MORNING, calendars={"kr": frozenset({date(2026, 11, 26)})}).items
    assert item.action == "stop" and not item.on_hours
    result = plan([ec2(tags=tags)], now=THU_MORNING)
    [finding] = result.findings
    assert finding.kind == "bad-schedule-tag" and "calendar 'kr' does not exist" in finding.reason


def test_bad_tag_is_a_finding_naming_resource_and_tag():
    result = plan([ec2(tags={"dataplatform-ops:schedule": "weekdays 8-20 Seoul"}, rid="i-bad"), ec2()])
    [finding] = result.findings
    assert finding.resource_id == "i-bad"
    assert "dataplatform-ops:schedule='weekdays 8-20 Seoul'" in finding.reason
    assert [i.resource.resource_id for i in result.items] == ["i-1"]


def test_opt_out_and_cannot_park_are_left_alone_with_the_reason():
    keep = ec2(tags={**SCHEDULE, "dataplatform-ops:keep": "true"}, rid="i-keep")
    asg = ec2(rid="i-asg", cannot_park="member of Auto Scaling group web: the group would replace it")
    result = plan([keep, asg])
    assert [i.action for i in result.items] == [None, None]
    [finding] = result.findings
    assert finding.kind == "parking-skipped" and finding.resource_id == "i-asg"
    assert "Auto Scaling group web" in finding.reason


# --- the flow on moto ------------------------------------------------------------------


def _tags(d):
    return [{"Key": k, "Value": v} for k, v in d.items()]


@pytest.fixture
def planted(aws):
    ec2c = boto3.client("ec2", region_name="us-east-1")
    image = ec2c.register_image(Name="base", RootDeviceName="/dev/sda1",
                                BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]

    def run(tags, itype="m5.large"):
        spec = [{"ResourceType": "instance", "Tags": _tags(tags)}] if tags else []
        return ec2c.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=itype,
                                  TagSpecifications=spec)["Instances"][0]["InstanceId"]

    ids = {
        "dev": run(SCHEDULE),
        "keep": run({**SCHEDULE, "dataplatform-ops:keep": "yes"}),
        "asg": run({**SCHEDULE, "aws:autoscaling:groupName": "web"}),
        "bad": run({"dataplatform-ops:schedule": "weekdays 8-20 Seoul"}),
        "untagged": run({}),
    }
    rds = boto3.client("rds", region_name="us-east-1")
    rds.create_db_instance(DBInstanceIdentifier="dev-db", DBInstanceClass="db.m5.large", Engine="postgres",
                           MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20,
                           Tags=_tags({"env": "dev"}))
    rds.create_db_cluster(DBClusterIdentifier="dev-aurora", Engine="aurora-postgresql", MasterUsername="u",
                          MasterUserPassword="password1", Tags=_tags(SCHEDULE))
    rds.create_db_instance(DBInstanceIdentifier="dev-aurora-a", DBInstanceClass="db.r5.large",
                           Engine="aurora-postgresql", DBClusterIdentifier="dev-aurora")
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return ids, creds, ec2c, rds


def _states(ec2c, rds, ids):
    inst = {i["InstanceId"]: i["State"]["Name"]
            for r in ec2c.describe_instances()["Reservations"] for i in r["Instances"]}
    out = {name: inst[i] for name, i in ids.items()}
    out["dev-db"] = rds.describe_db_instances(DBInstanceIdentifier="dev-db")["DBInstances"][0]["DBInstanceStatus"]
    out["dev-aurora"] = rds.describe_db_clusters(DBClusterIdentifier="dev-aurora")["DBClusters"][0]["Status"]
    return out


def test_flow_parks_on_transitions_only(planted, store):
    from flows.dev_parking import dev_parking

    ids, creds, ec2c, rds = planted
    policy = ParkingPolicy(default_schedules={"dev": "weekdays 08:00-20:00 Asia/Seoul"})
    kw = dict(policy=policy, aws_credentials=creds, store=store._block_document_name, regions=["us-east-1"])

    dry = dev_parking(now=WED_NIGHT, **kw)
    assert sorted(o.payload.resource.resource_id for o in dry.offers) == sorted([ids["dev"], "dev-db", "dev-aurora"])
    assert set(_states(ec2c, rds, ids).values()) == {"running", "available"}  # dry run changed nothing
    assert {f.kind: f.resource_id for f in dry.findings} == {
        "bad-schedule-tag": ids["bad"], "parking-skipped": ids["asg"]}
    saved = {i.resource.resource_id: i.saved_month_usd for i in dry.details}
    assert saved[ids["dev"]] == pytest.approx(0.096 * PARKED, abs=0.01)
    assert saved["dev-db"] == pytest.approx(0.178 * PARKED, abs=0.01)
    assert saved["dev-aurora"] == pytest.approx(0.25 * PARKED, abs=0.01)
    assert saved[ids["keep"]] is None and ids["untagged"] not in saved

    # The first apply asks once for the schedules (nothing pre-selected); a person approves all three.
    answer = {"approved": [ids["dev"], "dev-db", "dev-aurora"]}
    assert run_and_answer(dev_parking, answer, now=WED_NIGHT, apply=True, **kw).is_completed()
    states = _states(ec2c, rds, ids)
    assert states == {"dev": "stopped", "keep": "running", "asg": "running", "bad": "running",
                      "untagged": "running", "dev-db": "stopped", "dev-aurora": "stopped"}
    done = [a for a in store.actions_of("dev-parking") if a["outcome"] == "done"]
    assert sorted(a["resource_id"] for a in done) == sorted([ids["dev"], "dev-db", "dev-aurora"])

    again = dev_parking(now=WED_NIGHT + timedelta(minutes=15), apply=True, **kw)
    assert again.offers == [] and again.actions == []

    # Someone starts the instance by hand at 22:00 KST: the next run leaves it up.
    ec2c.start_instances(InstanceIds=[ids["dev"]])
    assert dev_parking(now=WED_NIGHT + timedelta(hours=1), apply=True, **kw).offers == []
    assert _states(ec2c, rds, ids)["dev"] == "running"

    # Thursday 08:30 KST: the databases start; the instance is already up.
    # Thursday's transition runs on the approved schedules: no pause, no click.
    morning = dev_parking(now=THU_MORNING, apply=True, **kw)
    assert sorted(a["resource"] for a in morning.actions if a["outcome"] == "done") == ["dev-aurora", "dev-db"]
    assert _states(ec2c, rds, ids)["dev-db"] == "available"


def test_least_privilege_policy():
    import flows.dev_parking as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    read = flow_actions(module, read_only=True)
    assert read == {"ec2:DescribeInstances", "rds:DescribeDBInstances", "rds:DescribeDBClusters"} | TARGETS
    assert flow_actions(module) - read == {"ec2:StopInstances", "ec2:StartInstances", "rds:StopDBInstance",
                                           "rds:StartDBInstance", "rds:StopDBCluster", "rds:StartDBCluster"}


def test_calendar_files(tmp_path):
    from rules.config import ConfigError
    from tasks.calendars import load_calendars

    assert date(2026, 9, 25) in load_calendars.fn("calendars")["kr-2026"]  # the bundled example
    (tmp_path / "team.txt").write_text("# office closed\n2026-12-24\n")
    assert load_calendars.fn(str(tmp_path)) == {"team": frozenset({date(2026, 12, 24)})}
    (tmp_path / "broken.txt").write_text("christmas\n")
    with pytest.raises(ConfigError, match="broken.txt: line 1"):
        load_calendars.fn(str(tmp_path))
    with pytest.raises(ConfigError, match="calendars_dir"):
        load_calendars.fn(str(tmp_path / "missing"))


@scenario_for("dev-parking")
def least_privilege_scenario(planted):
    from flows.dev_parking import dev_parking

    ids, creds, ec2c, rds = planted
    policy = ParkingPolicy(default_schedules={"dev": "weekdays 08:00-20:00 Asia/Seoul"})
    return Scenario(dev_parking, creds,
                    dict(policy=policy, regions=["us-east-1"], now=WED_NIGHT), {ids["bad"], ids["asg"]},
                    drop="rds:DescribeDBInstances", approve=[ids["dev"], "dev-db", "dev-aurora"],
                    withhold="ec2:StopInstances", withheld={ids["dev"]},
                    state=lambda: {ids.get(k, k): v for k, v in _states(ec2c, rds, ids).items()})
