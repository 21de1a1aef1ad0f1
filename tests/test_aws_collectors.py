"""The shared EC2/S3 collectors on moto: the records the cost rules are built on."""

import boto3
from prefect_aws import AwsCredentials

from tasks.aws.clients import Account, PageCounter
from tasks.aws.ec2 import (
    describe_instance_types,
    list_addresses,
    list_image_snapshots,
    list_instances,
    list_snapshots,
    list_volumes,
)
from tasks.aws.s3 import iter_objects, list_buckets, put_lifecycle_rule


def test_ec2_records(aws):
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    account = Account(AwsCredentials())
    free = ec2.allocate_address(Domain="vpc")["AllocationId"]
    image = ec2.register_image(Name="base-image", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large",
                             TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "env", "Value": "dev"}]}])["Instances"][0]
    vol = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=50, VolumeType="gp2")["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]

    [address] = list_addresses(account, "eu-west-1")
    assert address.allocation_id == free and address.instance_id is None
    volumes = {v.volume_id: v for v in list_volumes(account, "eu-west-1", PageCounter())}
    assert volumes[vol].state == "available" and volumes[vol].size_gb == 50 and volumes[vol].volume_type == "gp2"
    assert any(v.attached_to == (inst["InstanceId"],) for v in volumes.values())
    assert snap in {s.snapshot_id for s in list_snapshots(account, "eu-west-1")}
    assert image in list_image_snapshots(account, "eu-west-1").values()
    [instance] = list_instances.fn(account, "eu-west-1")
    assert instance.instance_type == "m5.large" and instance.tags == {"env": "dev"}
    types = describe_instance_types.fn(account, "eu-west-1", ["m5.large", "m7g.large"])
    assert types["m5.large"]["architectures"] == ["x86_64"] and types["m7g.large"]["architectures"] == ["arm64"]


def test_s3_buckets_objects_and_lifecycle_merge(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="app-logs")
    rule = {"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}
    s3.put_bucket_lifecycle_configuration(Bucket="app-logs", LifecycleConfiguration={"Rules": [rule]})
    for i in range(5):
        s3.put_object(Bucket="app-logs", Key=f"tmp/{i}", Body=b"x")
    account = Account(AwsCredentials())
    [bucket] = list_buckets.fn(account)
    assert bucket.region == "us-east-1" and bucket.lifecycle_rules[0]["ID"] == "old"
    counter = PageCounter()
    keys = [o["Key"] for o in iter_objects(account, "app-logs", "us-east-1", counter=counter)]
    assert len(keys) == 5 and counter.pages == 1

    new = {"ID": "dpo-it", "Status": "Enabled", "Filter": {"Prefix": ""},
           "Transitions": [{"Days": 0, "StorageClass": "INTELLIGENT_TIERING"}]}
    assert put_lifecycle_rule(account, "app-logs", "us-east-1", new) == "added"
    assert put_lifecycle_rule(account, "app-logs", "us-east-1", new) == "unchanged"
    ids = [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="app-logs")["Rules"]]
    assert sorted(ids) == ["dpo-it", "old"]


def test_one_client_per_service_and_region_within_a_target(aws):
    """Inside `shared_clients` (the runner opens it around each target's collect and apply) the
    target's listings and task threads share one client per service x region; outside, each
    call builds its own (as before), so a sweep does not hold hundreds of ~1.4 MB clients."""
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    from tasks.aws.clients import shared_clients

    account, other = Account(AwsCredentials(region_name="us-east-1")), Account(AwsCredentials(region_name="us-east-1"))
    with shared_clients(), ThreadPoolExecutor(8) as pool:
        # Task threads run in a copy of the submitting context, as Prefect's task runner does.
        clients = [f.result() for f in [pool.submit(copy_context().run, account.client, ("ec2", "s3")[i % 2],
                                                    "eu-west-1") for i in range(32)]]
        assert len({id(c) for c in clients}) == 2
        assert account.client("ec2", "eu-west-1") is clients[0]
        assert account.client("ec2", "us-east-1") is not clients[0]
        assert other.client("ec2", "eu-west-1") is not clients[0]
        assert account.client("ec2", "eu-west-1").describe_volumes()["Volumes"] == []
    assert account.client("ec2", "eu-west-1") is not clients[0]
    assert account.client("ec2", "eu-west-1") is not account.client("ec2", "eu-west-1")
