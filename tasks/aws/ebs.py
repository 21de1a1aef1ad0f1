"""EBS metrics, modification history and the one volume modifier (ModifyVolume)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from botocore.exceptions import ClientError
from prefect import task

from blocks.store import OpsStore
from rules.rightsizing import Activity, VolumeChange, p99
from tasks.aws.clients import Account, error_summary, paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.ec2 import Volume
from tasks.aws.permissions import requires

# EBS publishes 1-minute samples on Nitro: the hourly Maximum of VolumeReadOps / 60 is the
# busiest minute's IOPS.
SAMPLE_SECONDS = 60


@task(name="volume-activity")
@requires("cloudwatch:GetMetricData")
def volume_activity(account: Account, region: str, volumes: Sequence[Volume], start: datetime,
                    end: datetime) -> dict[str, Activity]:
    """Peak and p99 IOPS, p99 throughput and total operations per attached volume: six series
    each, 83 volumes per GetMetricData call (hourly maxima: 336 points a series in 14 days)."""
    queries = []
    for n, v in enumerate(volumes):
        dims = {"VolumeId": v.volume_id}
        queries += [MetricQuery(f"rmax{n}", "AWS/EBS", "VolumeReadOps", dims, "Maximum", 3600),
                    MetricQuery(f"wmax{n}", "AWS/EBS", "VolumeWriteOps", dims, "Maximum", 3600),
                    MetricQuery(f"rbmax{n}", "AWS/EBS", "VolumeReadBytes", dims, "Maximum", 3600),
                    MetricQuery(f"wbmax{n}", "AWS/EBS", "VolumeWriteBytes", dims, "Maximum", 3600),
                    MetricQuery(f"rsum{n}", "AWS/EBS", "VolumeReadOps", dims, "Sum", 86400),
                    MetricQuery(f"wsum{n}", "AWS/EBS", "VolumeWriteOps", dims, "Sum", 86400)]
    if not queries:
        return {}
    data = get_metric_data(account.client("cloudwatch", region), queries, start, end)
    found = {}
    for n, v in enumerate(volumes):
        # Read and write maxima of an hour may fall in different minutes: their sum errs high (safe).
        ops, volume_bytes = _per_hour(data, f"rmax{n}", f"wmax{n}"), _per_hour(data, f"rbmax{n}", f"wbmax{n}")
        sums = data.values(f"rsum{n}") + data.values(f"wsum{n}")
        found[v.volume_id] = Activity(
            peak_iops=max(ops.values()) / SAMPLE_SECONDS if ops else None,
            total_ops=sum(sums) if (sums or ops) else None,
            p99_iops=p99(x / SAMPLE_SECONDS for x in ops.values()) if ops else None,
            p99_mibps=p99(b / SAMPLE_SECONDS / 2**20 for b in volume_bytes.values()) if ops else None,
        )
    return found


def _per_hour(data, *query_ids: str) -> dict[datetime, float]:
    """The series of `query_ids` added up hour by hour."""
    total: dict[datetime, float] = {}
    for qid in query_ids:
        for ts, value in data.series.get(qid, []):
            total[ts] = total.get(ts, 0.0) + value
    return total


def _device(name: str) -> str:
    # /dev/xvdf, xvdf1, /dev/sdf -> sdf; NVMe names cannot be matched this way.
    d = name.removeprefix("/dev/")
    if d.startswith("xvd"):
        d = "sd" + d[3:]
    return d.rstrip("0123456789") if d.startswith("sd") else d


@task(name="disk-usage")
@requires("cloudwatch:ListMetrics", "cloudwatch:GetMetricData")
def disk_usage(account: Account, region: str, volumes: Sequence[Volume], start: datetime,
               end: datetime) -> dict[str, tuple[str, str, float]]:
    """Volume -> (instance, device, highest disk_used_percent) from the CloudWatch agent, where
    published. A series is matched to a volume by device name, or to an instance's only volume."""
    cw = account.client("cloudwatch", region)
    series = [{d["Name"]: d["Value"] for d in m["Dimensions"]}
              for m in paginate(cw, "list_metrics", "Metrics", Namespace="CWAgent", MetricName="disk_used_percent")]
    series = [s for s in series if "InstanceId" in s]
    if not series:
        return {}
    queries = [MetricQuery(f"d{n}", "CWAgent", "disk_used_percent", s, "Maximum", 86400) for n, s in enumerate(series)]
    data = get_metric_data(cw, queries, start, end)
    by_device = {(i, _device(dev)): v for v in volumes for i, dev in zip(v.attached_to, v.devices, strict=False)}
    only = {}
    for v in volumes:
        for i in v.attached_to:
            only[i] = None if i in only else v
    found: dict[str, tuple[str, str, float]] = {}
    for n, s in enumerate(series):
        values = data.values(f"d{n}")
        if not values:
            continue
        vol = by_device.get((s["InstanceId"], _device(s.get("device", ""))))
        if vol is None and s.get("path") == "/":
            vol = only.get(s["InstanceId"])
        if vol is None:
            continue
        peak = max(values)
        if vol.volume_id not in found or peak > found[vol.volume_id][2]:
            found[vol.volume_id] = (s["InstanceId"], s.get("device", ""), peak)
    return found


@task(name="volume-modifications")
@requires("ec2:DescribeVolumesModifications")
def volume_modifications(account: Account, region: str) -> dict[str, tuple[str, datetime]]:
    """Latest modification (state, start time) per volume: AWS allows one per 6 hours."""
    ec2 = account.client("ec2", region)
    latest: dict[str, tuple[str, datetime]] = {}
    for m in paginate(ec2, "describe_volumes_modifications", "VolumesModifications"):
        if m["VolumeId"] not in latest or m["StartTime"] > latest[m["VolumeId"]][1]:
            latest[m["VolumeId"]] = (m.get("ModificationState", ""), m["StartTime"])
    return latest


# Already modified / still in cooldown: nothing to do now, not a failure.
_NOT_NOW = {"IncorrectModificationState", "VolumeModificationRateExceeded"}


@task(name="modify-volumes")
@requires("ec2:ModifyVolume", write=True)
def modify_volumes(account: Account, region: str, changes: Sequence[VolumeChange], store: OpsStore,
                   job: str, now: datetime, apply: bool) -> dict[str, str]:
    """ModifyVolume for the approved changes of one region; every change is recorded."""
    ec2 = account.client("ec2", region) if apply else None
    outcomes = {}
    for c in changes:
        detail = {"kind": c.kind, **c.modify_kwargs(), "saving_usd_month": c.saving}
        if c.blocked:
            outcome, detail["why"] = "skipped", c.blocked
        elif not apply:
            outcome = "planned"
        else:
            try:
                ec2.modify_volume(**c.modify_kwargs())
                outcome = "done"
            except ClientError as exc:
                outcome = "skipped" if exc.response["Error"]["Code"] in _NOT_NOW else "failed"
                detail["error"] = error_summary(exc)
        store.record_action(job, action=c.kind, resource_id=c.volume_id, scope=region, dry_run=not apply,
                            outcome=outcome, detail=detail, now=now)
        outcomes[c.volume_id] = outcome
    return outcomes
