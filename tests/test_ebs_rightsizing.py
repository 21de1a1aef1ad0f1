"""ebs-rightsizing: pure judgement, and the flow on moto with planted volumes and metrics, priced
in us-east-1 and in ap-northeast-2 (Seoul's exact gp2/gp3/io2-IOPS prices; io1 falls back, marked),
and with the prices the Pricing API answers (the refresh every cost job shares)."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect_aws import AwsCredentials

from rules.pricing import BUNDLED
from rules.rightsizing import (
    Activity,
    EbsPolicy,
    ShrinkCandidate,
    gp2_baseline,
    gp3_target,
    p99,
    review_volumes,
    shrink_plan_markdown,
)
from tasks.aws.clients import Account
from tasks.aws.ec2 import Volume
from tasks.aws.pricing import PRICE_WATERMARK, QUERIES
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


@pytest.mark.parametrize(("region", "saving", "estimated"), [
    ("us-east-1", 422.50, False),  # 8,000 - 1,500 = 6,500 IOPS x $0.065
    ("ap-northeast-2", 432.90, False),  # 6,500 x Seoul's $0.0666: exact, though io2 GB-month falls back
])
def test_io2_lower_iops_saving_is_priced_by_the_iops_price_alone(region, saving, estimated):
    vol = Volume("vol-io2", region, "io2", 100, "in-use", datetime(2026, 1, 1, tzinfo=timezone.utc), iops=8000,
                 attached_to=("i-1",))
    review = review_volumes([vol], {"vol-io2": Activity(1000, 10**6)}, {}, {}, EbsPolicy(), BUNDLED,
                            datetime(2026, 11, 1, tzinfo=timezone.utc))
    [f] = review.findings
    assert (f.kind, f.monthly_cost_usd, f.numbers["target_iops"]) == ("ebs-lower-iops", saving, 1500)
    assert f.numbers["price_estimated"] is estimated and "estimated" not in f.reason


def _metric(cw, name, volume, value, ts):
    cw.put_metric_data(Namespace="AWS/EBS", MetricData=[
        {"MetricName": name, "Dimensions": [{"Name": "VolumeId", "Value": volume}], "Timestamp": ts, "Value": value}])


@pytest.fixture
def planted_volumes(aws, request):
    """Eight volumes on one instance with a day of CloudWatch activity, in us-east-1 unless the test
    names another region (indirect parametrization); -> (volume id by role, creds block, now)."""
    region = getattr(request, "param", "us-east-1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - timedelta(hours=3)
    ec2 = boto3.client("ec2", region_name=region)
    cw = boto3.client("cloudwatch", region_name=region)
    image = ec2.register_image(Name="base", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large",
                                 Placement={"AvailabilityZone": f"{region}a"})["Instances"][0]["InstanceId"]

    def volume(device, size, vtype="gp2", iops=None, tags=None, attach=True):
        kw = {"Iops": iops} if iops else {}
        if tags:
            kw["TagSpecifications"] = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        vid = ec2.create_volume(AvailabilityZone=f"{region}a", Size=size, VolumeType=vtype, **kw)["VolumeId"]
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
        "quiet": volume("/dev/sdl", 200),  # gp2 bursts to 250 MiB/s at this size; it uses 2
    }
    ec2.modify_volume(VolumeId=ids["recent"], Size=1010)  # an hour-old change: 6-hour cooldown
    for role in ("busy", "keep", "roomy"):
        _metric(cw, "VolumeReadOps", ids[role], 6000, hour)
    _metric(cw, "VolumeReadOps", ids["piops"], 60_000, hour)  # busiest minute: 1,000 + 500 IOPS
    _metric(cw, "VolumeWriteOps", ids["piops"], 30_000, hour)
    _metric(cw, "VolumeReadOps", ids["hot"], 240_000, hour)  # 4,000 IOPS in its busiest minute
    _metric(cw, "VolumeReadBytes", ids["hot"], 200 * 2**20 * 60, hour)  # and 200 MiB/s
    _metric(cw, "VolumeReadOps", ids["quiet"], 5400, hour)  # 90 IOPS in its busiest minute
    _metric(cw, "VolumeReadBytes", ids["quiet"], 2 * 2**20 * 60, hour)  # and 2 MiB/s
    _metric(cw, "VolumeReadOps", ids["idle"], 20, hour)
    _metric(cw, "VolumeWriteOps", ids["idle"], 30, hour)
    cw.put_metric_data(Namespace="CWAgent", MetricData=[
        {"MetricName": "disk_used_percent", "Timestamp": hour - timedelta(days=d), "Value": used,
         "Dimensions": [{"Name": "InstanceId", "Value": instance}, {"Name": "device", "Value": "xvdj"},
                        {"Name": "path", "Value": "/data"}, {"Name": "fstype", "Value": "xfs"}]}
        for d, used in ((1, 15.0), (2, 20.0))])
    creds = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name=region).save(creds)
    return ids, creds, now


ROLES = ("busy", "keep", "quiet", "recent", "hot", "piops", "idle", "roomy")
KINDS = dict.fromkeys(("busy", "keep", "quiet", "recent", "hot"), "ebs-gp2-to-gp3") | {
    "piops": "ebs-lower-iops", "idle": "ebs-near-idle", "roomy": "ebs-shrink-candidate"}
# $/month by role, worked out by hand from the list prices (not by the code under test).
EXPECTED = {
    "us-east-1": {
        # gp2 $0.10, gp3 $0.08 a GB-month. Measured 100 and 90 IOPS, no throughput to speak of:
        # gp3's free 3,000 IOPS / 125 MiB/s. 500 x 0.02; 100 x 0.02; 200 x 0.02.
        "busy": 10.00, "keep": 2.00, "quiet": 4.00,
        # Detached, no metrics: gp2's baseline 3,030 IOPS kept. 1,010 x 0.10 - (1,010 x 0.08 + 30 x 0.005)
        "recent": 20.05,
        # 4,000 IOPS / 200 MiB/s measured x 1.5: 6,000 IOPS and 300 MiB/s provisioned.
        # 1,500 x 0.10 - (1,500 x 0.08 + 3,000 x 0.005 + 175 x 0.04) = 150 - 142
        "hot": 8.00,
        "piops": 500.50,  # io1 10,000 -> 2,300 IOPS: 7,700 x 0.065
        "idle": 16.00,  # 200 GB gp3 x 0.08
        "roomy": 16.80,  # 300 -> 90 GB gp3: 210 x 0.08
    },
    "ap-northeast-2": {
        # gp2 $0.114, gp3 $0.0912: 500 x 0.0228; 100 x 0.0228; 200 x 0.0228 (the issue's quiet 200 GiB)
        "busy": 11.40, "keep": 2.28, "quiet": 4.56,
        # 1,010 x 0.114 - (1,010 x 0.0912 + 30 x 0.0057) = 115.14 - 92.283 = 22.857
        "recent": 22.86,
        # 1,500 x 0.114 - (1,500 x 0.0912 + 3,000 x 0.0057 + 175 x 0.0456) = 171 - (136.8 + 17.1 + 7.98)
        "hot": 9.12,
        "piops": 500.50,  # no Seoul io1 IOPS price: us-east-1's 7,700 x 0.065, marked estimated
        "idle": 18.24,  # 200 x 0.0912
        "roomy": 19.15,  # 210 x 0.0912 = 19.152
    },
}


@pytest.mark.parametrize(("planted_volumes", "region"), [pytest.param(r, r, id=r) for r in EXPECTED], indirect=["planted_volumes"])
def test_flow_finds_exact_changes_priced_in_the_volume_s_region(planted_volumes, region, store):
    from flows.ebs_rightsizing import ebs_rightsizing

    ids, creds, now = planted_volumes
    review = ebs_rightsizing(aws_credentials=creds, store=store._block_document_name, regions=[region], now=now)
    got = {(f.kind, f.resource_id): f.monthly_cost_usd for f in review.findings}
    assert got == pytest.approx({(KINDS[r], ids[r]): EXPECTED[region][r] for r in ROLES}, abs=0.005)
    # Seoul prices gp2 and gp3 (with its IOPS and throughput extras) itself; only io1 falls back.
    estimated = {f.resource_id for f in review.findings if f.numbers["price_estimated"]}
    assert estimated == ({ids["piops"]} if region == "ap-northeast-2" else set())
    assert all(("(estimated price)" in f.reason) == (f.resource_id in estimated)
               for f in review.findings if f.kind != "ebs-near-idle")
    changes = [o.payload for o in review.offers]
    settings = {c.volume_id: (c.target_iops, c.target_throughput) for c in changes}
    assert settings[ids["hot"]] == (6000, 300) and settings[ids["recent"]] == (3030, 125)
    assert settings[ids["busy"]] == settings[ids["quiet"]] == (3000, 125)
    assert "measured p99 4,000 IOPS / 200.0 MiB/s in 14 days x 1.5 headroom" in next(
        f.reason for f in review.findings if f.resource_id == ids["hot"])
    blocked = {c.volume_id: c.blocked for c in changes if c.blocked}
    assert blocked[ids["keep"]] == "opt-out tag dataplatform-ops:keep" and "allows the next change" in blocked[ids["recent"]]
    assert set(blocked) == {ids["keep"], ids["recent"]}
    types = {v["VolumeId"]: v["VolumeType"] for v in boto3.client("ec2", region_name=region).describe_volumes()["Volumes"]}
    assert types[ids["busy"]] == types[ids["keep"]] == "gp2"  # a dry run changes nothing


def test_flow_applies_only_approved(planted_volumes, store):
    from flows.ebs_rightsizing import ebs_rightsizing

    ids, creds, now = planted_volumes
    busy, keep, piops, recent = (ids[k] for k in ("busy", "keep", "piops", "recent"))
    ec2 = boto3.client("ec2", region_name="us-east-1")
    kw = dict(aws_credentials=creds, store=store._block_document_name, regions=["us-east-1"], now=now)

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


# A GetProducts entry for Seoul's io1 IOPS, which the bundle lacks (it falls back to us-east-1's
# $0.065, marked estimated): the price the stubbed Pricing API states for it.
SEOUL_IO1_IOPS = json.dumps({
    "product": {"productFamily": "System Operation", "sku": "SEOULIO1IOPS0001", "attributes": {
        "regionCode": "ap-northeast-2", "locationType": "AWS Region", "servicecode": "AmazonEC2",
        "volumeApiName": "io1", "group": "EBS IOPS", "usagetype": "APN2-EBS:VolumeP-IOPS.piops"}},
    "serviceCode": "AmazonEC2",
    "terms": {"OnDemand": {"SEOULIO1IOPS0001.JRTCKXETXF": {"priceDimensions": {
        "SEOULIO1IOPS0001.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "IOPS-Mo", "beginRange": "0", "endRange": "Inf", "pricePerUnit": {"USD": "0.0666000000"}}}}}},
})


@pytest.mark.parametrize("planted_volumes", ["ap-northeast-2"], indirect=True)
def test_flow_prices_with_the_pricing_api_when_it_answers_and_says_so_when_not(planted_volumes, store, monkeypatch):
    from flows.ebs_rightsizing import JOB, ebs_rightsizing

    ids, creds, now = planted_volumes
    pricing = boto3.client("pricing", region_name="us-east-1")
    account_client = Account.client
    monkeypatch.setattr(Account, "client", lambda self, service, region=None, config=None: (
        pricing if service == "pricing" else account_client(self, service, region, config)))

    def run() -> tuple[dict, str]:
        state = ebs_rightsizing(aws_credentials=creds, store=store._block_document_name, regions=["ap-northeast-2"],
                                now=now, return_state=True)
        with get_client(sync_client=True) as client:
            report = "\n".join(str(a.data) for a in client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))))
        piops = next(f for f in state.result().findings if f.resource_id == ids["piops"])
        return {"usd": piops.monthly_cost_usd, "estimated": piops.numbers["price_estimated"]}, report

    stubber = Stubber(pricing)
    stubber.add_client_error("get_products", "AccessDeniedException", "not authorized to perform: pricing:GetProducts")
    with stubber:
        denied, report = run()
    assert denied == {"usd": pytest.approx(500.50), "estimated": True}  # the bundle: us-east-1's 7,700 x 0.065
    assert "Bundled list prices used: Pricing API unavailable" in report and "AccessDenied" in report
    assert store.get_watermark(JOB, PRICE_WATERMARK) is None  # a failure is not cached

    stubber = Stubber(pricing)
    for service, family in QUERIES:
        entries = [SEOUL_IO1_IOPS] if (service, family) == ("AmazonEC2", "System Operation") else []
        stubber.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": entries},
                             {"ServiceCode": service, "Filters": ANY})
    with stubber:
        answered, report = run()
        stubber.assert_no_pending_responses()
    assert answered == {"usd": pytest.approx(512.82, abs=0.005), "estimated": False}  # 7,700 x 0.0666
    assert "Bundled list prices used" not in report

    with Stubber(pricing):  # no answer queued: a call would fail; the job's table from the store is used
        cached, report = run()
    assert cached == answered and "Bundled list prices used" not in report
    assert json.loads(store.get_watermark(JOB, PRICE_WATERMARK))["regions"] == ["ap-northeast-2"]


def test_least_privilege_policy():
    import flows.ebs_rightsizing as module
    from deployments.iam import flow_actions
    from tasks.runner import TARGETS

    read = flow_actions(module, read_only=True)
    assert read == {"ec2:DescribeVolumes", "ec2:DescribeVolumesModifications", "cloudwatch:GetMetricData",
                    "cloudwatch:ListMetrics", "pricing:GetProducts"} | TARGETS
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
