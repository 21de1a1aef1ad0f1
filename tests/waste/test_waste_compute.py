"""waste-checks' EC2, EBS and RDS checks on moto: long-stopped and previous-generation instances,
io1 volumes, old snapshots, unused AMIs, old RDS manual snapshots.

Resources are created now; the checks run 120 days later (`NOW`), so they are old. The young
look-alikes are created under freezegun two days before `NOW`. Prices are the bundled us-east-1
list prices (see each expectation).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from freezegun import freeze_time

from flows.waste_checks import waste_checks
from rules.waste import WastePolicy
from tasks.aws.waste.compute import stopped_since
from tests.waste.test_waste_flow import KEEP, creds  # noqa: F401 - a fixture

REGION = "us-east-1"
NOW = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=120)
KINDS = ["long-stopped-instance", "previous-generation-instance", "io1-volume", "old-ebs-snapshot", "unused-ami",
         "old-rds-snapshot"]


def _tags(resource_type: str, *tags: dict) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": list(tags)}] if tags else []


def plant_compute() -> dict[str, tuple[str, float]]:
    """-> resource id -> (kind, $/month) of the waste planted; look-alikes besides."""
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    az = f"{REGION}a"
    base = ec2.register_image(Name="base", RootDeviceName="/dev/sda1")["ImageId"]

    def run(instance_type: str, *tags: dict, root: tuple[str, int] = ("gp3", 8)) -> str:
        return ec2.run_instances(
            ImageId=base, MinCount=1, MaxCount=1, InstanceType=instance_type, Placement={"AvailabilityZone": az},
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeType": root[0], "VolumeSize": root[1]}}],
            TagSpecifications=_tags("instance", *tags))["Instances"][0]["InstanceId"]

    waste: dict[str, tuple[str, float]] = {}
    # Stopped 120 days: a 50 GiB gp3 root ($4.00), a 100 GiB gp2 data volume ($10.00), an EIP ($3.65).
    parked = run("m5.large", root=("gp3", 50))
    data = ec2.create_volume(AvailabilityZone=az, Size=100, VolumeType="gp2")["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=parked, Device="/dev/sdf")
    ec2.associate_address(AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"], InstanceId=parked)
    ec2.stop_instances(InstanceIds=[parked])
    waste[parked] = ("long-stopped-instance", 4.0 + 10.0 + 3.65)
    kept = run("m5.large", KEEP)
    ec2.stop_instances(InstanceIds=[kept])
    recently = run("m5.large")
    with freeze_time(NOW - timedelta(days=5)):
        ec2.stop_instances(InstanceIds=[recently])  # stopped 5 days: not yet

    # Previous generations, running: t2.medium -> t3.medium saves (0.0464 - 0.0416) x 730 = $3.504;
    # m4.xlarge -> m5.xlarge saves (0.20 - 0.192) x 730 = $5.84. A t3 and an opted-out t2 are fine.
    waste[run("t2.medium")] = ("previous-generation-instance", 3.504)
    waste[run("m4.xlarge")] = ("previous-generation-instance", 5.84)
    run("t3.micro")
    run("t2.micro", KEEP)

    # io1 400 GiB with 8,000 IOPS: 400 x 0.125 + 8,000 x 0.065 = $570.00; the same as gp3 (8,000 IOPS,
    # 125 MiB/s): 400 x 0.08 + 5,000 x 0.005 = $57.00: saves $513.00. Over 16,000 IOPS gp3 cannot, and
    # up to 32,000 io2 costs the same; over it io2 bills the IOPS above 32,000 at $0.0455 instead of
    # $0.065: 40,000 IOPS save 8,000 x 0.0195 = $156.00.
    io1 = ec2.create_volume(AvailabilityZone=az, Size=400, VolumeType="io1", Iops=8000)["VolumeId"]
    waste[io1] = ("io1-volume", 513.0)
    ec2.create_volume(AvailabilityZone=az, Size=400, VolumeType="io1", Iops=20000)
    waste[ec2.create_volume(AvailabilityZone=az, Size=800, VolumeType="io1", Iops=40000)["VolumeId"]] = (
        "io1-volume", 156.0)
    ec2.create_volume(AvailabilityZone=az, Size=400, VolumeType="io2", Iops=8000)

    # Snapshots of an existing volume: 120 days old ($0.05 x 100 GiB = $5.00); a young one, a kept
    # one, one whose volume is gone (idle-resources' orphan) are not this check's.
    waste[ec2.create_snapshot(VolumeId=data)["SnapshotId"]] = ("old-ebs-snapshot", 5.0)
    ec2.create_snapshot(VolumeId=data, TagSpecifications=_tags("snapshot", KEEP))
    with freeze_time(NOW - timedelta(days=2)):
        ec2.create_snapshot(VolumeId=data)
    gone = ec2.create_volume(AvailabilityZone=az, Size=30, VolumeType="gp2")["VolumeId"]
    ec2.create_snapshot(VolumeId=gone)
    ec2.delete_volume(VolumeId=gone)

    # AMIs: one made from the parked instance and never launched; `base` runs instances.
    unused = ec2.create_image(InstanceId=parked, Name="etl-2026-08")["ImageId"]
    [image] = ec2.describe_images(ImageIds=[unused])["Images"]
    size = sum(m["Ebs"].get("VolumeSize", 0) for m in image["BlockDeviceMappings"] if "Ebs" in m)
    waste[unused] = ("unused-ami", round(0.05 * size, 4))
    with freeze_time(NOW - timedelta(days=2)):
        ec2.create_image(InstanceId=parked, Name="etl-fresh")

    # RDS: a 120-day-old manual snapshot of a live database ($0.095 x 100 GB = $9.50) and a young
    # one of a database that is gone ($0.095 x 20 GB = $1.90); a young one of a live database is fine.
    for name, gb in (("orders-db", 100), ("old-db", 20)):
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                               AllocatedStorage=gb, MasterUsername="admin", MasterUserPassword="password1")
    rds.create_db_snapshot(DBSnapshotIdentifier="orders-2026-08", DBInstanceIdentifier="orders-db")
    waste["orders-2026-08"] = ("old-rds-snapshot", 9.5)
    with freeze_time(NOW - timedelta(days=10)):
        rds.create_db_snapshot(DBSnapshotIdentifier="old-db-final", DBInstanceIdentifier="old-db")
        rds.create_db_snapshot(DBSnapshotIdentifier="orders-recent", DBInstanceIdentifier="orders-db")
    rds.delete_db_instance(DBInstanceIdentifier="old-db", SkipFinalSnapshot=True)
    waste["old-db-final"] = ("old-rds-snapshot", 1.9)
    return waste


def test_compute_checks_find_the_planted_waste_at_list_price(creds, store):  # noqa: F811
    waste = plant_compute()
    # The floor is 0: the unused AMI's snapshots (moto makes them 15 GiB) cost $0.75.
    result = waste_checks(policy=WastePolicy(checks=KINDS, min_monthly_usd=0), regions=[REGION], aws_credentials=creds,
                          store=store._block_document_name, now=NOW)
    assert result.errors == {}
    found = {f.resource_id: (f.kind, f.monthly_cost_usd) for f in result.findings}
    assert found == {k: (kind, pytest.approx(usd)) for k, (kind, usd) in waste.items()}
    stopped = next(f for f in result.findings if f.kind == "long-stopped-instance")
    # Stopped a little after `NOW` - 120 days was fixed: 119 whole days.
    assert stopped.reason == "m5.large stopped for 119 days; its 2 volumes (150 GiB) and 1 Elastic IPs still bill"


@pytest.mark.parametrize(("reason", "since"), [
    ("User initiated (2026-08-01 09:30:00 GMT)", datetime(2026, 8, 1, 9, 30, tzinfo=timezone.utc)),
    ("User initiated (2026-08-01 09:30:00 UTC)", datetime(2026, 8, 1, 9, 30, tzinfo=timezone.utc)),
    ("Server.SpotInstanceTermination", None),
    ("", None),
])
def test_when_an_instance_stopped_is_read_from_its_transition_reason(reason, since):
    assert stopped_since(reason) == since
