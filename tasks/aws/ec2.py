"""EC2 collectors, paging with the one paginator: `ec2_inventory` reads a region's idle-sweep
listings in one task run; `list_instances` and `describe_instance_types` are tasks of their own.

Records are plain dataclasses with the fields the rules need; tags are a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect import task

from tasks.aws.clients import Account, PageCounter, error_summary, paginate
from tasks.aws.permissions import requires


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


@dataclass(frozen=True)
class Address:
    allocation_id: str
    public_ip: str
    region: str
    association_id: str | None
    instance_id: str | None
    network_interface_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Volume:
    volume_id: str
    region: str
    volume_type: str
    size_gb: int
    state: str
    create_time: datetime
    iops: int | None = None
    throughput: int | None = None
    snapshot_id: str | None = None
    attached_to: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # attachment device names, in the order of `attached_to`


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    region: str
    volume_id: str | None
    size_gb: int
    start_time: datetime
    state: str
    description: str = ""
    storage_tier: str = "standard"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    instance_id: str
    region: str
    instance_type: str
    state: str
    launch_time: datetime
    architecture: str
    image_id: str
    root_device_type: str
    platform: str | None = None
    lifecycle: str | None = None  # "spot" / "scheduled"; None for on-demand
    tags: dict[str, str] = field(default_factory=dict)
    state_reason: str = ""  # StateTransitionReason: "User initiated (2026-10-01 08:00:00 GMT)"

    @property
    def auto_scaling_group(self) -> str | None:
        return self.tags.get("aws:autoscaling:groupName")


@requires("ec2:DescribeAddresses")
def list_addresses(account: Account, region: str) -> list[Address]:
    ec2 = account.client("ec2", region)
    return [
        Address(
            allocation_id=a.get("AllocationId", a.get("PublicIp", "")),
            public_ip=a.get("PublicIp", ""),
            region=region,
            # moto returns "" for unassociated addresses where AWS omits the key.
            association_id=a.get("AssociationId") or None,
            instance_id=a.get("InstanceId") or None,
            network_interface_id=a.get("NetworkInterfaceId") or None,
            tags=tag_dict(a.get("Tags")),
        )
        for a in ec2.describe_addresses()["Addresses"]  # not pageable: one call per region
    ]


@requires("ec2:DescribeVolumes")
def list_volumes(account: Account, region: str, counter: PageCounter | None = None) -> list[Volume]:
    ec2 = account.client("ec2", region)
    return [
        Volume(
            volume_id=v["VolumeId"],
            region=region,
            volume_type=v["VolumeType"],
            size_gb=v["Size"],
            state=v["State"],
            create_time=v["CreateTime"],
            iops=v.get("Iops"),
            throughput=v.get("Throughput"),
            snapshot_id=v.get("SnapshotId") or None,
            attached_to=tuple(a["InstanceId"] for a in v.get("Attachments", [])),
            tags=tag_dict(v.get("Tags")),
            devices=tuple(a.get("Device", "") for a in v.get("Attachments", [])),
        )
        for v in paginate(ec2, "describe_volumes", "Volumes", counter=counter)
    ]


@requires("ec2:DescribeSnapshots")
def list_snapshots(account: Account, region: str, counter: PageCounter | None = None) -> list[Snapshot]:
    ec2 = account.client("ec2", region)
    return [
        Snapshot(
            snapshot_id=s["SnapshotId"],
            region=region,
            volume_id=s.get("VolumeId") or None,
            size_gb=s.get("VolumeSize", 0),
            start_time=s["StartTime"],
            state=s.get("State", ""),
            description=s.get("Description", ""),
            storage_tier=s.get("StorageTier", "standard"),
            tags=tag_dict(s.get("Tags")),
        )
        for s in paginate(ec2, "describe_snapshots", "Snapshots", counter=counter, OwnerIds=["self"])
    ]


@requires("ec2:DescribeImages")
def list_image_snapshots(account: Account, region: str) -> dict[str, str]:
    """Snapshot id -> AMI id for every snapshot backing one of the account's own AMIs."""
    ec2 = account.client("ec2", region)
    backing: dict[str, str] = {}
    for image in paginate(ec2, "describe_images", "Images", Owners=["self"]):
        for mapping in image.get("BlockDeviceMappings", []):
            snapshot_id = mapping.get("Ebs", {}).get("SnapshotId")
            if snapshot_id:
                backing[snapshot_id] = image["ImageId"]
    return backing


@dataclass
class Ec2Inventory:
    """What the idle sweep reads in one region; a listing that failed is None, its error kept."""

    addresses: list[Address] | None = None
    volumes: list[Volume] | None = None
    snapshots: list[Snapshot] | None = None
    image_snapshots: dict[str, str] | None = None
    errors: dict[str, str] = field(default_factory=dict)


_LISTINGS = {"addresses": list_addresses, "volumes": list_volumes, "snapshots": list_snapshots,
             "image_snapshots": list_image_snapshots}


@task(name="ec2-inventory")
def ec2_inventory(account: Account, region: str) -> Ec2Inventory:
    """A region's addresses, volumes, snapshots and AMI snapshots, read one after another.

    Regions run in parallel; a region's own listings do not, as they would only contend
    for the same endpoint and the same interpreter. One failing listing leaves the rest.
    Its IAM actions are the listings' own `@requires`, found through `_LISTINGS`.
    """
    inventory = Ec2Inventory()
    for kind, listing in _LISTINGS.items():
        try:
            setattr(inventory, kind, listing(account, region))
        except Exception as exc:  # AccessDenied, endpoint errors: reported by the flow
            inventory.errors[kind.replace("_", "-")] = error_summary(exc)
    return inventory


@task(name="list-instances")
@requires("ec2:DescribeInstances")
def list_instances(account: Account, region: str, counter: PageCounter | None = None) -> list[Instance]:
    ec2 = account.client("ec2", region)
    instances = []
    for reservation in paginate(ec2, "describe_instances", "Reservations", counter=counter):
        for i in reservation["Instances"]:
            instances.append(
                Instance(
                    instance_id=i["InstanceId"],
                    region=region,
                    instance_type=i["InstanceType"],
                    state=i["State"]["Name"],
                    launch_time=i["LaunchTime"],
                    architecture=i.get("Architecture", "x86_64"),
                    image_id=i.get("ImageId", ""),
                    root_device_type=i.get("RootDeviceType", "ebs"),
                    platform=i.get("Platform"),
                    lifecycle=i.get("InstanceLifecycle"),
                    tags=tag_dict(i.get("Tags")),
                    state_reason=i.get("StateTransitionReason", ""),
                )
            )
    return instances


@task(name="describe-instance-types")
@requires("ec2:DescribeInstanceTypes")
def describe_instance_types(account: Account, region: str, instance_types: list[str]) -> dict[str, dict[str, Any]]:
    """Architecture, vCPUs and memory per type, straight from DescribeInstanceTypes; a type the
    region does not offer is absent (asked by filter: AWS refuses the whole call when one name in
    `InstanceTypes` is unknown)."""
    if not instance_types:
        return {}
    ec2 = account.client("ec2", region)
    found = {}
    for t in paginate(ec2, "describe_instance_types", "InstanceTypes",
                      Filters=[{"Name": "instance-type", "Values": sorted(set(instance_types))}]):
        found[t["InstanceType"]] = {
            "architectures": t.get("ProcessorInfo", {}).get("SupportedArchitectures", []),
            "vcpus": t.get("VCpuInfo", {}).get("DefaultVCpus"),
            "memory_mib": t.get("MemoryInfo", {}).get("SizeInMiB"),
        }
    return found
