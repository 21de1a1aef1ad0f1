"""The idle-resource sweep on moto across two regions, under the real Prefect server.

A seeded account holds planted idle resources and look-alikes that are not idle (attached
volume, associated EIP, opt-out tag, young volume, AMI-backed snapshot, bucket whose lifecycle
already expires the objects). The sweep must find exactly the idle ones at the right price;
the apply path must pause, act only on the approved subset, and change nothing the second time.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from freezegun import freeze_time
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
)
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_UI_URL
from prefect_aws import AwsCredentials

import flows.idle_resources as idle_module
from deployments.iam import flow_actions
from flows.idle_resources import JOB, idle_resources
from rules.config import ConfigError
from rules.idle import ORIGIN_VOLUME_TAG, IdlePolicy, S3AgeRule
from rules.pricing import (
    BUNDLED,
    ebs_volume_monthly,
    public_ipv4_monthly,
    s3_monthly,
    snapshot_monthly,
)
from tests.approvals import paused_run_id
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

REGIONS = ["us-east-1", "eu-west-1"]
KEEP = {"Key": "dataplatform-ops:keep", "Value": "yes"}
MIB = 1024 * 1024
# Resources are created "now" (real time); the sweep runs 40 days later.
NOW = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=40)
POLICY = IdlePolicy(refresh_prices=False, s3_age_rules=[S3AgeRule(bucket="*", prefix="tmp/", max_age_days=30)])


@dataclass
class World:
    idle: dict[str, float] = field(default_factory=dict)  # resource id -> expected $/month
    not_idle: set[str] = field(default_factory=set)
    young_volumes: set[str] = field(default_factory=set)


def _tags(resource_type: str, *tags: dict[str, str]) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": list(tags)}]


def seed(world: World | None = None) -> World:
    """Plant idle and non-idle resources in two regions and three buckets."""
    w = world or World()
    for region in REGIONS:
        ec2 = boto3.client("ec2", region_name=region)
        az = f"{region}a"
        image = ec2.register_image(Name=f"base-{region}", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                     Placement={"AvailabilityZone": az})["Instances"][0]["InstanceId"]

        idle_ip = ec2.allocate_address(Domain="vpc")["AllocationId"]
        w.idle[idle_ip] = public_ipv4_monthly(BUNDLED, region).usd
        used_ip = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.associate_address(AllocationId=used_ip, InstanceId=instance)
        kept_ip = ec2.allocate_address(Domain="vpc", TagSpecifications=_tags("elastic-ip", KEEP))["AllocationId"]
        w.not_idle |= {used_ip, kept_ip}

        spec = {"us-east-1": [("gp2", 100, None, None), ("gp3", 200, 4000, 250)],
                "eu-west-1": [("io1", 100, 1000, None)]}[region]
        for volume_type, size, iops, throughput in spec:
            extra = {k: v for k, v in (("Iops", iops), ("Throughput", throughput)) if v}
            vol = ec2.create_volume(AvailabilityZone=az, Size=size, VolumeType=volume_type, **extra)["VolumeId"]
            w.idle[vol] = ebs_volume_monthly(BUNDLED, region, volume_type, size, iops, throughput).usd
        attached = ec2.create_volume(AvailabilityZone=az, Size=30, VolumeType="gp3")["VolumeId"]
        ec2.attach_volume(VolumeId=attached, InstanceId=instance, Device="/dev/sdf")
        kept_vol = ec2.create_volume(AvailabilityZone=az, Size=40, VolumeType="gp3",
                                     TagSpecifications=_tags("volume", KEEP))["VolumeId"]
        w.not_idle |= {attached, kept_vol}

        # Orphaned: the volume is gone and no AMI uses the snapshot.
        size = {"us-east-1": 50, "eu-west-1": 20}[region]
        gone = ec2.create_volume(AvailabilityZone=az, Size=size, VolumeType="gp2")["VolumeId"]
        orphan = ec2.create_snapshot(VolumeId=gone)["SnapshotId"]
        kept_snap = ec2.create_snapshot(VolumeId=gone, TagSpecifications=_tags("snapshot", KEEP))["SnapshotId"]
        ec2.delete_volume(VolumeId=gone)
        w.idle[orphan] = snapshot_monthly(BUNDLED, region, size).usd
        live = ec2.create_snapshot(VolumeId=attached)["SnapshotId"]  # its volume still exists
        w.not_idle |= {kept_snap, live}

        with freeze_time(NOW - timedelta(days=2)):
            young_vol = ec2.create_volume(AvailabilityZone=az, Size=10, VolumeType="gp3")["VolumeId"]
            young_gone = ec2.create_volume(AvailabilityZone=az, Size=10, VolumeType="gp3")["VolumeId"]
            young_snap = ec2.create_snapshot(VolumeId=young_gone)["SnapshotId"]
        ec2.delete_volume(VolumeId=young_gone)
        w.not_idle |= {young_vol, young_snap}
        w.young_volumes.add(young_vol)

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="raw-events")
    for i in range(3):
        s3.put_object(Bucket="raw-events", Key=f"tmp/part-{i}", Body=b"x" * MIB)
    s3.put_object(Bucket="raw-events", Key="keep/part-0", Body=b"x" * MIB)  # outside the prefix
    with freeze_time(NOW - timedelta(days=1)):
        s3.put_object(Bucket="raw-events", Key="tmp/fresh", Body=b"x" * MIB)  # too young
    w.idle["s3://raw-events/tmp/"] = s3_monthly(BUNDLED, "us-east-1", "STANDARD", 3 * MIB).usd
    s3.create_bucket(Bucket="curated-data")
    s3.put_bucket_lifecycle_configuration(Bucket="curated-data", LifecycleConfiguration={"Rules": [
        {"ID": "expire-all", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 90}}]})
    s3.put_object(Bucket="curated-data", Key="tmp/old", Body=b"x")
    s3.create_bucket(Bucket="eu-archive", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_tagging(Bucket="eu-archive", Tagging={"TagSet": [KEEP]})
    boto3.client("s3", region_name="eu-west-1").put_object(Bucket="eu-archive", Key="tmp/old", Body=b"x")
    w.not_idle |= {"s3://curated-data/tmp/", "s3://eu-archive/tmp/"}
    return w


@pytest.fixture
def creds(aws) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(name)
    return name


def ec2_state() -> dict[str, set[str]]:
    state: dict[str, set[str]] = {"addresses": set(), "volumes": set(), "snapshots": set(), "lifecycle": set()}
    for region in REGIONS:
        ec2 = boto3.client("ec2", region_name=region)
        state["addresses"] |= {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}
        state["volumes"] |= {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
        state["snapshots"] |= {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    for bucket in ("raw-events", "curated-data"):
        state["lifecycle"] |= {f"{bucket}:{rule_id}" for rule_id in _rule_ids(bucket)}
    return state


def _rule_ids(bucket: str) -> list[str]:
    s3 = boto3.client("s3")
    try:
        return [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]]
    except s3.exceptions.ClientError:
        return []


def _snapshot(snapshot_id: str) -> dict:
    for region in REGIONS:
        found = boto3.client("ec2", region_name=region).describe_snapshots(
            Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"]
        if found:
            return found[0]
    raise AssertionError(f"{snapshot_id} not found")


def test_sweep_finds_exactly_the_planted_idle_resources_at_the_right_price(creds, store):
    world = seed()
    result = idle_resources(policy=POLICY, regions=REGIONS, aws_credentials=creds,
                            store=store._block_document_name, now=NOW)
    found = {f["resource_id"]: f for f in store.findings_of(JOB, status="open")}
    assert set(found) == set(world.idle)
    assert not set(found) & world.not_idle
    for resource, expected in world.idle.items():
        assert found[resource]["monthly_cost_usd"] == pytest.approx(expected, rel=0.01, abs=1e-4), resource
    total = sum(world.idle.values())
    assert result.monthly_usd == pytest.approx(total, rel=0.01)
    assert total == pytest.approx(2 * 3.65 + 10 + 26 + 85.8 + 2.5 + 1.0, rel=0.01)  # list prices by hand
    assert result.errors == {} and result.actions == []
    s3_finding = found["s3://raw-events/tmp/"]["data"]["numbers"]
    assert s3_finding["objects"] == 3 and s3_finding["bytes"] == 3 * MIB

    # "Idle since" comes from the store: ten days later the same resources are 10 days idle.
    idle_resources(policy=POLICY, regions=REGIONS, aws_credentials=creds,
                   store=store._block_document_name, now=NOW + timedelta(days=10))
    again = {f["resource_id"]: f["data"]["numbers"] for f in store.findings_of(JOB, status="open")}
    assert {again[r]["idle_days"] for r in world.idle} == {10}
    # Meanwhile the young volumes came of age: new findings, idle since today.
    assert {r: n["idle_days"] for r, n in again.items() if r not in world.idle} == {
        r: 0 for r in world.young_volumes}


def test_bad_input_fails_before_any_api_call(creds, store):
    with pytest.raises(ConfigError, match="role_arns"):
        idle_resources.fn(role_arns=["not-an-arn"], aws_credentials=creds, store=store._block_document_name)
    with pytest.raises(ConfigError, match="regions"):
        idle_resources.fn(regions=["Europe"], aws_credentials=creds, store=store._block_document_name)


def test_least_privilege_policy_is_generated_from_the_declarations():
    read = flow_actions(idle_module, read_only=True)
    every = flow_actions(idle_module)
    assert {"ec2:DescribeVolumes", "ec2:DescribeAddresses", "s3:ListBucket", "pricing:GetProducts"} <= read
    assert every - read == {"ec2:ReleaseAddress", "ec2:CreateSnapshot", "ec2:CreateTags", "ec2:DeleteVolume",
                            "ec2:DeleteSnapshot", "s3:PutLifecycleConfiguration"}


def _run_in_thread(**kwargs):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("state", idle_resources(return_state=True, **kwargs)))
    thread.start()
    return thread, box


def _artifact(key: str):
    with get_client(sync_client=True) as client:
        [latest] = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return latest


def test_apply_pauses_acts_only_on_the_approved_subset_then_changes_nothing(creds, store):
    world = seed()
    eips = sorted(r for r in world.idle if r.startswith("eipalloc-"))
    volumes = sorted(r for r in world.idle if r.startswith("vol-"))
    snapshots = sorted(r for r in world.idle if r.startswith("snap-"))
    approved = [eips[0], volumes[0], snapshots[0], "s3://raw-events/tmp/"]
    before = ec2_state()
    started = datetime.now(timezone.utc) - timedelta(seconds=1)

    thread, box = _run_in_thread(policy=POLICY, regions=REGIONS, aws_credentials=creds,
                                 store=store._block_document_name, apply=True, now=NOW)
    run_id = paused_run_id(JOB, started)
    # Report first: findings are in the store and the plan lists every resource with its cost.
    assert {f["resource_id"] for f in store.findings_of(JOB, status="open")} == set(world.idle)
    plan = json.loads(_artifact(f"{JOB}-plan").data)
    assert {row["approve_id"] for row in plan} == set(world.idle)
    assert ec2_state() == before  # nothing changes while paused

    resume_flow_run(run_id, run_input={"approved": approved})
    thread.join(120)
    assert box["state"].is_completed(), box["state"]

    after = ec2_state()
    assert before["addresses"] - after["addresses"] == {eips[0]}
    assert before["volumes"] - after["volumes"] == {volumes[0]}
    new_snapshots = after["snapshots"] - before["snapshots"]
    assert before["snapshots"] - after["snapshots"] == {snapshots[0]}
    [backup] = new_snapshots  # the volume was deleted only after a tagged, completed snapshot
    snap = _snapshot(backup)
    assert snap["State"] == "completed"
    assert {"Key": ORIGIN_VOLUME_TAG, "Value": volumes[0]} in snap["Tags"]
    [rule_id] = _rule_ids("raw-events")
    assert after["lifecycle"] - before["lifecycle"] == {f"raw-events:{rule_id}"}
    actions = store.actions_of(JOB)
    assert sorted((a["resource_id"], a["outcome"], a["dry_run"]) for a in actions) == sorted(
        (r, "done", False) for r in approved)
    assert all(a["flow_run_id"] == run_id for a in actions)
    # The acted-on findings are resolved (announced once); the rest stay open.
    assert {f["resource_id"] for f in store.findings_of(JOB, status="open")} == set(world.idle) - set(approved)
    # The run's summary leads to its plan, the actions taken and the approval asked for.
    summary = _artifact(f"{JOB}-summary")
    assert str(summary.flow_run_id) == run_id
    ui = PREFECT_UI_URL.value()
    for link in (f"{ui}/artifacts/key/{JOB}-plan", f"{ui}/artifacts/key/{JOB}-actions", f"{ui}/runs/flow-run/{run_id}"):
        assert f"]({link})" in summary.data, link

    # Second apply: the same approval again (what is left is offered; nothing is approved).
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    thread, box = _run_in_thread(policy=POLICY, regions=REGIONS, aws_credentials=creds,
                                 store=store._block_document_name, apply=True, now=NOW)
    run_id = paused_run_id(JOB, started)
    plan = json.loads(_artifact(f"{JOB}-plan").data)
    assert {row["approve_id"] for row in plan} == set(world.idle) - set(approved)
    resume_flow_run(run_id, run_input={"approved": []})
    thread.join(120)
    assert box["state"].is_completed()
    assert ec2_state() == after
    assert len(store.actions_of(JOB)) == len(approved)



def test_unapproved_plan_times_out_and_cancels_the_run(creds, store):
    seed()
    before = ec2_state()
    policy = POLICY.model_copy(update={"approval_timeout_seconds": 10})
    state = idle_resources(policy=policy, regions=REGIONS, aws_credentials=creds,
                           store=store._block_document_name, apply=True, now=NOW, return_state=True)
    assert state.is_cancelled() and "nothing was changed" in state.message
    assert ec2_state() == before and store.actions_of(JOB) == []


# --- one account's regions answer AccessDenied (moto IAM enforcement, nothing mocked) ---------

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})


def _role(iam, name: str, actions: list[str] | None) -> str:
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    if actions:
        iam.put_role_policy(RoleName=name, PolicyName="sweep", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    return arn


def test_access_denied_regions_are_reported_and_the_others_complete(aws, store, monkeypatch):
    world = seed()
    iam = boto3.client("iam")
    iam.create_user(UserName="sweeper")
    iam.put_user_policy(UserName="sweeper", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="sweeper")["AccessKey"]
    reader = _role(iam, "idle-sweep-reader", sorted(flow_actions(idle_module, read_only=True)))
    # The second account's role exists but may do nothing: every call it makes is denied.
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "111111111111")
    denied = _role(boto3.client("iam"), "idle-sweep-reader", None)
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                   region_name="us-east-1").save(name)

    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    result = idle_resources(policy=POLICY, regions=REGIONS, role_arns=[reader, denied], aws_credentials=name,
                            store=store._block_document_name, now=NOW)

    # The role in the credentials' own account replaces it; the other account is denied everywhere.
    assert result.errors and all(where.startswith("111111111111/") for where in result.errors)
    for region in REGIONS:
        said = " ".join(why for where, why in result.errors.items() if where.startswith(f"111111111111/{region}"))
        for kind in ("addresses", "volumes", "snapshots", "image-snapshots"):
            assert f"{kind}: AccessDenied" in said, (region, kind)
        assert "AccessDenied" in said.replace("addresses: AccessDenied", "")
    found = {f["resource_id"] for f in store.findings_of(JOB, status="open")}
    assert found == set(world.idle)  # the readable account was swept completely
    summary = _artifact(f"{JOB}-summary").data
    assert "Not covered this run" in summary and "111111111111/eu-west-1" in summary


@scenario_for("idle-resources")
def least_privilege_scenario(aws):
    world = seed()
    eips, vols, snaps = (sorted(r for r in world.idle if r.startswith(p)) for p in ("eipalloc-", "vol-", "snap-"))
    approve = [eips[0], vols[0], snaps[0], "s3://raw-events/tmp/"]

    def state():
        now = ec2_state()
        exists = now["addresses"] | now["volumes"] | now["snapshots"]
        return {r: r in exists for r in approve[:3]} | {approve[3]: _rule_ids("raw-events")}

    return Scenario(idle_resources, plain_creds(), dict(policy=POLICY, regions=REGIONS, now=NOW), set(world.idle),
                    drop="s3:ListAllMyBuckets", approve=approve, withhold="ec2:DeleteSnapshot",
                    withheld={snaps[0]}, state=state)
