"""The act step of the idle-resource sweep: release, snapshot-then-delete, delete, propose lifecycle.

Every action re-reads the resource first (the plan may be hours old): it skips a resource that
is in use again or carries the opt-out tag, counts a vanished resource as done (a second apply
changes nothing), passes `DryRun` where EC2 supports it, and declares its IAM permissions.
`apply_plan` runs one task per (account, region) and records each outcome in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.store import OpsStore
from rules.config import opted_out
from rules.idle import (
    IDLE_EIP,
    ORIGIN_VOLUME_TAG,
    ORPHANED_SNAPSHOT,
    STALE_OBJECTS,
    UNATTACHED_VOLUME,
    PlanItem,
)
from tasks.aws.clients import Account, error_summary
from tasks.aws.ec2 import tag_dict
from tasks.aws.permissions import requires
from tasks.aws.s3 import put_lifecycle_rule

NOT_FOUND = frozenset({
    "InvalidAllocationID.NotFound", "InvalidAddress.NotFound", "InvalidVolume.NotFound",
    "InvalidSnapshot.NotFound", "NoSuchBucket",
})
SNAPSHOT_WAIT = {"Delay": 15, "MaxAttempts": 240}  # up to an hour for a large first snapshot


@dataclass(frozen=True)
class Outcome:
    status: str  # done | skipped | dry-run | failed
    detail: str


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _call(fn: Callable[..., Any], **kwargs: Any) -> Outcome | None:
    """Run a mutating call; DryRunOperation / NotFound become outcomes, other errors raise."""
    try:
        fn(**kwargs)
    except ClientError as exc:
        if _code(exc) == "DryRunOperation":
            return Outcome("dry-run", "permitted; nothing changed (DryRun)")
        if _code(exc) in NOT_FOUND:
            return Outcome("done", "already gone")
        raise
    return None


@requires("ec2:DescribeAddresses", "ec2:ReleaseAddress", write=True)
def release_address(ec2: Any, allocation_id: str, opt_out_tag: str, dry_run: bool = False) -> Outcome:
    try:
        [address] = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"]
    except ClientError as exc:
        if _code(exc) in NOT_FOUND:
            return Outcome("done", "already released")
        raise
    if address.get("AssociationId") or address.get("InstanceId"):
        return Outcome("skipped", "associated again since the plan")
    if opted_out(tag_dict(address.get("Tags")), opt_out_tag):
        return Outcome("skipped", f"tagged {opt_out_tag}")
    return (_call(ec2.release_address, AllocationId=allocation_id, DryRun=dry_run)
            or Outcome("done", f"released {address.get('PublicIp', '')}"))


def _backup_of(ec2: Any, volume_id: str) -> str | None:
    """A snapshot this sweep already took of the volume (a retried apply reuses it)."""
    snapshots = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{ORIGIN_VOLUME_TAG}", "Values": [volume_id]}]
    )["Snapshots"]
    usable = [s for s in snapshots if s.get("State") in ("pending", "completed")]
    return usable[0]["SnapshotId"] if usable else None


@requires("ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:CreateSnapshot", "ec2:CreateTags",
          "ec2:DeleteVolume", write=True)
def snapshot_then_delete_volume(ec2: Any, volume_id: str, opt_out_tag: str,
                                dry_run: bool = False) -> Outcome:
    """Delete an unattached volume only after a completed snapshot tagged with its origin."""
    try:
        [volume] = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    except ClientError as exc:
        if _code(exc) in NOT_FOUND:
            return Outcome("done", "already deleted")
        raise
    tags = tag_dict(volume.get("Tags"))
    if volume["State"] != "available":
        return Outcome("skipped", f"now {volume['State']}")
    if opted_out(tags, opt_out_tag):
        return Outcome("skipped", f"tagged {opt_out_tag}")
    if dry_run:
        return _call(ec2.delete_volume, VolumeId=volume_id, DryRun=True) or Outcome("dry-run", "")
    snapshot_id = _backup_of(ec2, volume_id)
    if snapshot_id is None:
        origin = [
            {"Key": ORIGIN_VOLUME_TAG, "Value": volume_id},
            {"Key": "dataplatform-ops:origin", "Value":
                f"{volume['AvailabilityZone']} {volume['VolumeType']} {volume['Size']}GiB"},
        ] + [{"Key": k, "Value": v} for k, v in tags.items() if not k.startswith("aws:")]
        snapshot_id = ec2.create_snapshot(
            VolumeId=volume_id, Description=f"dataplatform-ops backup of {volume_id} before deletion",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": origin[:50]}],
        )["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot_id], WaiterConfig=SNAPSHOT_WAIT)
    return (_call(ec2.delete_volume, VolumeId=volume_id)
            or Outcome("done", f"deleted after snapshot {snapshot_id}"))


@requires("ec2:DescribeSnapshots", "ec2:DeleteSnapshot", write=True)
def delete_snapshot(ec2: Any, snapshot_id: str, opt_out_tag: str, dry_run: bool = False) -> Outcome:
    try:
        [snapshot] = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    except ClientError as exc:
        if _code(exc) in NOT_FOUND:
            return Outcome("done", "already deleted")
        raise
    if opted_out(tag_dict(snapshot.get("Tags")), opt_out_tag):
        return Outcome("skipped", f"tagged {opt_out_tag}")
    try:
        return (_call(ec2.delete_snapshot, SnapshotId=snapshot_id, DryRun=dry_run)
                or Outcome("done", "deleted"))
    except ClientError as exc:
        if _code(exc) == "InvalidSnapshot.InUse":  # an AMI was registered from it since
            return Outcome("skipped", "in use by an AMI")
        raise


@requires(write=True)  # put_lifecycle_rule declares what it calls
def put_lifecycle_expiration(account: Account, bucket: str, region: str, rule: dict[str, Any],
                             dry_run: bool = False) -> Outcome:
    """Objects are never deleted one by one: S3 expires them under a merged lifecycle rule."""
    if dry_run:
        return Outcome("dry-run", f"would add lifecycle rule {rule['ID']}")
    change = put_lifecycle_rule(account, bucket, region, rule)
    return Outcome("done", f"lifecycle rule {rule['ID']} {change}: expire after "
                           f"{rule['Expiration']['Days']} days")


def _act(account: Account, ec2: Any, item: PlanItem, opt_out_tag: str, dry_run: bool) -> Outcome:
    if item.kind == IDLE_EIP:
        return release_address(ec2, item.item_id, opt_out_tag, dry_run)
    if item.kind == UNATTACHED_VOLUME:
        return snapshot_then_delete_volume(ec2, item.item_id, opt_out_tag, dry_run)
    if item.kind == ORPHANED_SNAPSHOT:
        return delete_snapshot(ec2, item.item_id, opt_out_tag, dry_run)
    if item.kind == STALE_OBJECTS:
        return put_lifecycle_expiration(account, item.numbers["bucket"], item.region,
                                        item.numbers["proposed_rule"], dry_run)
    raise ValueError(f"no action for {item.kind}")


@task(name="apply-idle-actions", cache_policy=NO_CACHE)
@requires(write=True)  # each action declares what it calls
def apply_plan(account: Account, region: str, items: Sequence[PlanItem], job: str, store: OpsStore,
               opt_out_tag: str, now: datetime, flow_run_id: str | None = None,
               dry_run: bool = False) -> list[dict[str, Any]]:
    """Act on the approved items of one (account, region); one failure does not stop the rest."""
    ec2 = account.client("ec2", region)
    rows = []
    for item in items:
        try:
            outcome = _act(account, ec2, item, opt_out_tag, dry_run)
        except Exception as exc:  # recorded and reported; the other items go on
            outcome = Outcome("failed", error_summary(exc))
        store.record_action(job, action=item.action, resource_id=item.item_id, scope=item.scope,
                            dry_run=dry_run, outcome=outcome.status, detail=outcome.detail,
                            flow_run_id=flow_run_id, now=now)
        rows.append({"resource": item.item_id, "action": item.action, "scope": item.scope,
                     "outcome": outcome.status, "detail": outcome.detail,
                     "monthly_usd": round(item.monthly_cost_usd, 2)})
    return rows
