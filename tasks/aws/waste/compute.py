"""Waste listers for EC2, EBS and RDS: long-stopped and previous-generation instances, io1
volumes, old snapshots, unused AMIs, old RDS manual snapshots.

The EC2 listings (instances, volumes, addresses, snapshots, images) are read once per target
through `scan.once`, whichever checks need them.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from rules.waste import Resource
from tasks.aws.clients import paginate
from tasks.aws.ec2 import (
    Instance,
    list_addresses,
    list_instances,
    list_snapshots,
    list_volumes,
    tag_dict,
)
from tasks.aws.permissions import requires
from tasks.aws.waste.scan import Scan

# "User initiated (2026-10-01 08:00:00 GMT)": the only place EC2 says when an instance stopped.
_STOPPED_AT = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


def stopped_since(reason: str) -> datetime | None:
    match = _STOPPED_AT.search(reason or "")
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=timezone.utc) if match else None


def _instances(scan: Scan) -> list[Instance]:
    return list_instances.fn(scan.account, scan.region)


def _volumes(scan: Scan) -> list:
    return list_volumes(scan.account, scan.region)


def _addresses(scan: Scan) -> list:
    return list_addresses(scan.account, scan.region)


def _snapshots(scan: Scan) -> list:
    return list_snapshots(scan.account, scan.region)


@requires("ec2:DescribeImages")
def _images(scan: Scan) -> list[dict[str, Any]]:
    return list(paginate(scan.client("ec2"), "describe_images", "Images", Owners=["self"]))


def _volume_facts(v: Any) -> dict[str, Any]:
    return {"id": v.volume_id, "type": v.volume_type, "size_gb": v.size_gb, "iops": v.iops, "throughput": v.throughput}


def list_stopped_instances(scan: Scan) -> list[Resource]:
    """Stopped instances with the volumes attached to them and the Elastic IPs associated."""
    instances = [i for i in scan.once(_instances) if i.state == "stopped"]
    if not instances:
        return []
    volumes_of: dict[str, list] = {}
    for v in scan.once(_volumes):
        for instance_id in v.attached_to:
            volumes_of.setdefault(instance_id, []).append(v)
    ips_of: dict[str, int] = {}
    for a in scan.once(_addresses):
        if a.instance_id:
            ips_of[a.instance_id] = ips_of.get(a.instance_id, 0) + 1
    resources = []
    for i in instances:
        since = stopped_since(i.state_reason)
        resources.append(Resource(
            id=i.instance_id, region=scan.region, tags=i.tags, created=i.launch_time,
            facts={"instance_type": i.instance_type, "state": i.state,
                   "stopped_since": since.isoformat() if since else None,
                   "volumes": [_volume_facts(v) for v in volumes_of.get(i.instance_id, [])],
                   "public_ips": ips_of.get(i.instance_id, 0)}))
    return resources


def list_instance_types(scan: Scan) -> list[Resource]:
    """Every instance with its type and state (previous generations are judged by the rule)."""
    return [Resource(id=i.instance_id, region=scan.region, tags=i.tags, created=i.launch_time,
                     facts={"instance_type": i.instance_type, "state": i.state,
                            "auto_scaling_group": i.auto_scaling_group})
            for i in scan.once(_instances) if i.lifecycle != "spot"]


def list_provisioned_iops_volumes(scan: Scan) -> list[Resource]:
    return [Resource(id=v.volume_id, region=scan.region, tags=v.tags, created=v.create_time,
                     facts={"volume_type": v.volume_type, "size_gb": v.size_gb, "iops": v.iops or 0,
                            "state": v.state, "attached_to": list(v.attached_to)})
            for v in scan.once(_volumes) if v.volume_type == "io1"]


def list_volume_snapshots(scan: Scan) -> list[Resource]:
    """Own snapshots with whether their volume still exists and whether an AMI uses them."""
    volume_ids = {v.volume_id for v in scan.once(_volumes)}
    ami_of = {m["Ebs"]["SnapshotId"]: image["ImageId"] for image in scan.once(_images)
              for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")}
    return [Resource(id=s.snapshot_id, region=scan.region, tags=s.tags, created=s.start_time,
                     facts={"volume_id": s.volume_id, "volume_exists": bool(s.volume_id and s.volume_id in volume_ids),
                            "size_gb": s.size_gb, "tier": s.storage_tier, "state": s.state,
                            "ami": ami_of.get(s.snapshot_id)})
            for s in scan.once(_snapshots)]


def list_images(scan: Scan) -> list[Resource]:
    """Own AMIs with the instances (any state but terminated) launched from them and their snapshots."""
    in_use: dict[str, int] = {}
    for i in scan.once(_instances):
        if i.state not in ("terminated", "shutting-down"):
            in_use[i.image_id] = in_use.get(i.image_id, 0) + 1
    resources = []
    for image in scan.once(_images):
        ebs = [m["Ebs"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]
        created = image.get("CreationDate")
        resources.append(Resource(
            id=image["ImageId"], region=scan.region, tags=tag_dict(image.get("Tags")),
            created=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
            facts={"name": image.get("Name", ""), "instances": in_use.get(image["ImageId"], 0),
                   "last_launched": image.get("LastLaunchedTime"),
                   "snapshots": [e["SnapshotId"] for e in ebs], "size_gb": sum(e.get("VolumeSize", 0) for e in ebs)}))
    return resources


@requires("rds:DescribeDBSnapshots", "rds:DescribeDBInstances")
def list_rds_snapshots(scan: Scan) -> list[Resource]:
    """Manual DB snapshots with whether their database still exists."""
    rds = scan.client("rds")
    snapshots = list(paginate(rds, "describe_db_snapshots", "DBSnapshots", SnapshotType="manual"))
    if not snapshots:
        return []
    databases = {d["DBInstanceIdentifier"] for d in paginate(rds, "describe_db_instances", "DBInstances")}
    return [Resource(id=s["DBSnapshotIdentifier"], region=scan.region, arn=s.get("DBSnapshotArn", ""),
                     tags=tag_dict(s.get("TagList")), created=s.get("SnapshotCreateTime"),
                     facts={"db_instance": s.get("DBInstanceIdentifier", ""), "engine": s.get("Engine", ""),
                            "db_exists": s.get("DBInstanceIdentifier") in databases,
                            "allocated_gb": s.get("AllocatedStorage", 0), "status": s.get("Status", "")})
            for s in snapshots]
