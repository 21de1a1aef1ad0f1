"""ebs-rightsizing: pure judgement, and the flow on moto with planted volumes and metrics."""

import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from rules.rightsizing import (
    Activity,
    ShrinkCandidate,
    gp2_baseline,
    gp3_target,
    p99,
    shrink_plan_markdown,
)
from tests.approvals import run_and_answer
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    scenario_for,
    test_apply_with_its_policy_changes_exactly_the_approved,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)


def test_gp3_is_sized_from_measured_use_never_from_gp2_burst():
    assert gp2_baseline(10) == (100, 128) and gp2_baseline(9000) == (16000, 250)

    def target(size, iops=None, mibps=None):
        return gp3_target(size, Activity(None, None, iops, mibps), 1.5, 14)[:2]
    # No metrics: gp3's free baseline, unless gp2's baseline IOPS (3 per GiB) is above it.
    assert target(100) == (3000, 125) and target(200) == (3000, 125) and target(2000) == (6000, 125)
    # A quiet 200 GiB volume: gp2 would burst to 250 MiB/s, it uses 2: the free baseline.
    assert target(200, 90, 2.0) == (3000, 125)
    # A busy one: p99 x 1.5, IOPS in hundreds; throughput needs 0.25 MiB/s per IOPS.
    assert target(1500, 4000, 200) == (6000, 300)
    assert target(1500, 100, 900) == (4000, 1000)
    # A small volume cannot hold more than 500 IOPS per GiB; gp3 never goes above 16,000.
    assert target(4, 5000) == (3000, 125) and target(9000, 20_000) == (16_000, 125)
    assert p99([]) is None and p99(range(1, 101)) == 99 and p99([5.0]) == 5.0


def test_shrink_plan_is_a_migration_not_a_restore():
    text = shrink_plan_markdown([ShrinkCandidate("vol-1", "us-east-1", "i-1", "xvdj", 300, 90, 20.0, 16.8)])
    assert "300 GB -> 90 GB" in text and "rsync" in text and "Rollback" in text
    assert "cannot shrink" in text


def _metric(cw, name, volume, value, ts):
    cw.put_metric_data(Namespace="AWS/EBS", MetricData=[
        {"MetricName": name, "Dimensions": [{"Name": "VolumeId", "Value": volume}], "Timestamp": ts, "Value": value}])


@pytest.fixture
def planted_volumes(aws):
    """Six volumes on one instance with a day of CloudWatch activity; -> (volume id by role, creds block, now)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - timedelta(hours=3)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large",
                                 Placement={"AvailabilityZone": "us-east-1a"})["Instances"][0]["InstanceId"]

    def volume(device, size, vtype="gp2", iops=None, tags=None, attach=True):
        kw = {"Iops": iops} if iops else {}
        if tags:
            kw["TagSpecifications"] = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        vid = ec2.create_volume(AvailabilityZone="us-east-1a", Size=size, VolumeType=vtype, **kw)["VolumeId"]
        if attach:
            ec2.attach_volume(VolumeId=vid, InstanceId=instance, Device=device)
        return vid

    ids = {
        "busy": volume("/dev/sdf", 500),
        "keep": volume("/dev/sdg", 100, tags={"dataplatform-ops:keep": "db team"}),
        "piops": volume("/dev/sdh", 200, "io1", iops=10_000),
        "idle": volume("/dev/sdi", 200, "gp3"),
        "roomy": volume("/dev/sdj", 300, "gp3"),
        "recent": volume(None, 1000, attach=False),
        "hot": volume("/dev/sdk", 1500),  # busy beyond gp3's free baseline: needs provisioned IOPS
    }
    ec2.modify_volume(VolumeId=ids["recent"], Size=1010)  # an hour-old change: 6-hour cooldown
    for role in ("busy", "keep", "roomy"):
        _metric(cw, "VolumeReadOps", ids[role], 6000, hour)
    _metric(cw, "VolumeReadOps", ids["piops"], 60_000, hour)  # busiest minute: 1,000 + 500 IOPS
    _metric(cw, "VolumeWriteOps", ids["piops"], 30_000, hour)
    _metric(cw, "VolumeReadOps", ids["hot"], 240_000, hour)  # 4,000 IOPS in its busiest minute
    _metric(cw, "VolumeReadBytes", ids["hot"], 200 * 2**20 * 60, hour)  # and 200 MiB/s
    _metric(cw, "VolumeReadOps", ids["idle"], 20, hour)
    _metric(cw, "VolumeWriteOps", ids["idle"], 30, hour)
    cw.put_metric_data(Namespace="CWAgent", MetricData=[
        {"MetricName": "disk_used_percent", "Timestamp": hour - timedelta(days=d), "Value": used,
         "Dimensions": [{"Name": "InstanceId", "Value": instance}, {"Name": "device", "Value": "xvdj"},
                        {"Name": "path", "Value": "/data"}, {"Name": "fstype", "Value": "xfs"}]}
        for d, used in ((1, 15.0), (2, 20.0))])
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(creds)
    return ids, creds, now


def test_flow_finds_exact_changes_and_applies_only_approved(planted_volumes, store):
    from flows.ebs_rightsizing import ebs_rightsizing

    ids, creds, now = planted_volumes
    busy, keep, piops, idle, roomy, recent, hot = (
        ids[k] for k in ("busy", "keep", "piops", "idle", "roomy", "recent", "hot"))
    ec2 = boto3.client("ec2", region_name="us-east-1")
    kw = dict(aws_credentials=creds, store=store._block_document_name, regions=["us-east-1"], now=now)

    review = ebs_rightsizing(**kw)
    got = {(f.kind, f.resource_id): f.monthly_cost_usd for f in review.findings}
    changes = [o.payload for o in review.offers]
    assert got == pytest.approx({
        # Measured: 100 IOPS and no throughput -> gp3's free 3,000 IOPS / 125 MiB/s.
        ("ebs-gp2-to-gp3", busy): 50.0 - 40.0,
        ("ebs-gp2-to-gp3", keep): 10.0 - 8.0,
        # Detached, no metrics: gp2's baseline 3,030 IOPS kept, gp3's free throughput.
        ("ebs-gp2-to-gp3", recent): 101.0 - (80.8 + 30 * 0.005),
        # 4,000 IOPS and 200 MiB/s measured, x 1.5: 6,000 IOPS and 300 MiB/s provisioned.
        ("ebs-gp2-to-gp3", hot): 150.0 - (120.0 + 3000 * 0.005 + 175 * 0.04),
        ("ebs-lower-iops", piops): (10_000 - 2300) * 0.065,
        ("ebs-near-idle", idle): 200 * 0.08,
        ("ebs-shrink-candidate", roomy): (300 - 90) * 0.08,
    }, rel=0.01)
    settings = {c.volume_id: (c.target_iops, c.target_throughput) for c in changes}
    assert settings[hot] == (6000, 300) and settings[busy] == (3000, 125) and settings[recent] == (3030, 125)
    assert "measured p99 4,000 IOPS / 200.0 MiB/s in 14 days x 1.5 headroom" in next(
        f.reason for f in review.findings if f.resource_id == hot)
    blocked = {c.volume_id: c.blocked for c in changes if c.blocked}
    assert blocked[keep] == "opt-out tag dataplatform-ops:keep" and "allows the next change" in blocked[recent]
    assert set(blocked) == {keep, recent}
    types = {v["VolumeId"]: v["VolumeType"] for v in ec2.describe_volumes()["Volumes"]}
    assert types[busy] == "gp2" and types[keep] == "gp2"  # a dry run changes nothing

    # Approval offers only unblocked changes, nothing pre-selected; the person picks `busy`.
    state = run_and_answer(ebs_rightsizing, {"approved": [busy]}, apply=True, **kw)
    assert state.is_completed(), state
    vols = {v["VolumeId"]: v for v in ec2.describe_volumes()["Volumes"]}
    assert (vols[busy]["VolumeType"], vols[busy]["Iops"], vols[busy]["Throughput"]) == ("gp3", 3000, 125)
    assert vols[keep]["VolumeType"] == "gp2" and vols[recent]["VolumeType"] == "gp2"
    assert vols[piops]["Iops"] == 10_000  # not approved
    done = [a["resource_id"] for a in store.actions_of("ebs-rightsizing") if a["outcome"] == "done"]
    assert done == [busy]

    state = run_and_answer(ebs_rightsizing, {"approved": [piops]}, apply=True, now=now + timedelta(hours=7),
                           **{k: v for k, v in kw.items() if k != "now"})
    assert state.is_completed(), state
    done = [a["resource_id"] for a in store.actions_of("ebs-rightsizing") if a["outcome"] == "done"]
    assert done == [busy, piops]  # busy is gp3 now: nothing more to do
    assert ec2.describe_volumes(VolumeIds=[piops])["Volumes"][0]["Iops"] == 2300


def test_least_privilege_policy():
    import flows.ebs_rightsizing as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    read = flow_actions(module, read_only=True)
    assert read == {"ec2:DescribeVolumes", "ec2:DescribeVolumesModifications", "cloudwatch:GetMetricData",
                    "cloudwatch:ListMetrics"} | TARGETS
    assert flow_actions(module) - read == {"ec2:ModifyVolume"}


@scenario_for("ebs-rightsizing")
def least_privilege_scenario(planted_volumes):
    from flows.ebs_rightsizing import ebs_rightsizing

    ids, creds, now = planted_volumes
    ec2 = boto3.client("ec2", region_name="us-east-1")
    approve = [ids["busy"], ids["piops"]]
    return Scenario(ebs_rightsizing, creds, dict(regions=["us-east-1"], now=now), set(ids.values()),
                    drop="ec2:DescribeVolumesModifications", approve=approve, withhold="ec2:ModifyVolume",
                    withheld=set(approve),
                    state=lambda: {v["VolumeId"]: (v["VolumeType"], v.get("Iops")) for v in ec2.describe_volumes()["Volumes"]})
