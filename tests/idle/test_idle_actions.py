"""The act step on moto: DryRun, re-checks at act time, NotFound as done, a second apply is a no-op."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.idle import ORIGIN_VOLUME_TAG, PlanItem
from tasks.aws.actions import (
    apply_plan,
    delete_snapshot,
    release_address,
    snapshot_then_delete_volume,
)
from tasks.aws.clients import Account

KEEP = "dataplatform-ops:keep"
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)


def test_dry_run_changes_nothing(aws):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    assert release_address(ec2, ip, KEEP, dry_run=True).status == "dry-run"
    assert snapshot_then_delete_volume(ec2, vol, KEEP, dry_run=True).status == "dry-run"
    assert delete_snapshot(ec2, snap, KEEP, dry_run=True).status == "dry-run"
    assert len(ec2.describe_addresses()["Addresses"]) == 1
    assert len(ec2.describe_volumes()["Volumes"]) == 1
    assert len(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]) == 1


def test_act_time_checks_skip_what_changed_since_the_plan(aws):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=ip, InstanceId=instance)
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10)["VolumeId"]
    ec2.create_tags(Resources=[vol], Tags=[{"Key": KEEP, "Value": ""}])
    assert release_address(ec2, ip, KEEP).status == "skipped"
    assert snapshot_then_delete_volume(ec2, vol, KEEP).status == "skipped"
    assert len(ec2.describe_volumes(VolumeIds=[vol])["Volumes"]) == 1


def test_apply_twice_the_second_time_everything_is_already_done(aws, store: OpsStore):
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    ip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    vol = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=10, VolumeType="gp3",
                            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "bi"}]}])["VolumeId"]
    gone = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=5)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=gone)["SnapshotId"]
    items = [PlanItem(ip, "release-address", "idle-elastic-ip", "1/eu-west-1", "eu-west-1", 3.65, True, ""),
             PlanItem(vol, "snapshot-then-delete-volume", "unattached-volume", "1/eu-west-1", "eu-west-1", 0.88, True, ""),
             PlanItem(snap, "delete-snapshot", "orphaned-snapshot", "1/eu-west-1", "eu-west-1", 0.25, True, "")]
    account = Account(AwsCredentials(region_name="eu-west-1"))

    first = apply_plan.fn(account, "eu-west-1", items, "idle-test", store, KEEP, NOW)
    assert [r["outcome"] for r in first] == ["done", "done", "done"]
    [backup] = [s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]]
    tags = {t["Key"]: t["Value"] for t in backup["Tags"]}
    assert tags[ORIGIN_VOLUME_TAG] == vol and tags["team"] == "bi" and backup["State"] == "completed"

    second = apply_plan.fn(account, "eu-west-1", items, "idle-test", store, KEEP, NOW)
    assert [(r["outcome"], r["detail"]) for r in second] == [
        ("done", "already released"), ("done", "already deleted"), ("done", "already deleted")]
    assert len(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]) == 1  # no second backup
    assert [a["outcome"] for a in store.actions_of("idle-test")] == ["done"] * 6
