"""Waste lister and action for CloudWatch Logs: log groups that keep everything forever."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from rules.config import opted_out
from rules.waste import Resource, WastePolicy
from tasks.aws.actions import Outcome
from tasks.aws.clients import Account, paginate
from tasks.aws.permissions import requires
from tasks.aws.tagging import tags_by_arn
from tasks.aws.waste.scan import Scan


def _arn(group: dict[str, Any]) -> str:
    # `arn` ends in ":*" (every stream); tags and ARN-based calls use the group's own ARN.
    return group.get("logGroupArn") or group["arn"].removesuffix(":*")


@requires("logs:DescribeLogGroups")
def list_log_groups(scan: Scan) -> list[Resource]:
    """Every log group with its stored bytes and retention; tags from one tagging call per region."""
    tags = tags_by_arn(scan.account, scan.region, ["logs"])
    resources = []
    for g in paginate(scan.client("logs"), "describe_log_groups", "logGroups"):
        arn = _arn(g)
        resources.append(Resource(
            id=arn, region=scan.region, arn=arn, tags=tags.get(arn, {}),
            created=datetime.fromtimestamp(g["creationTime"] / 1000, timezone.utc) if "creationTime" in g else None,
            facts={"name": g["logGroupName"], "stored_bytes": g.get("storedBytes", 0), "retention_days": g.get("retentionInDays"),
                   "log_class": g.get("logGroupClass", "STANDARD")}))
    return resources


def _group(logs: Any, name: str) -> dict[str, Any] | None:
    for g in paginate(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=name):
        if g["logGroupName"] == name:
            return g
    return None


@requires("logs:DescribeLogGroups", "logs:ListTagsForResource", "logs:PutRetentionPolicy", write=True)
def set_log_retention(account: Account, region: str, resource: Resource, policy: WastePolicy) -> Outcome:
    """Give a log group the policy's retention; CloudWatch then deletes what is older, itself.

    Re-reads the group first: a retention set since the plan (by anyone) is left as it is, and
    a group tagged to be kept since then is skipped.
    """
    logs = account.client("logs", region)
    name = resource.facts["name"]
    group = _group(logs, name)
    if group is None:
        return Outcome("done", "already gone")
    if group.get("retentionInDays"):
        return Outcome("done", f"already keeps {group['retentionInDays']} days")
    try:
        tags = logs.list_tags_for_resource(resourceArn=_arn(group)).get("tags", {})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return Outcome("done", "already gone")
        raise
    if opted_out(tags, policy.opt_out_tag):
        return Outcome("skipped", f"tagged {policy.opt_out_tag}")
    logs.put_retention_policy(logGroupName=name, retentionInDays=policy.log_retention_days)
    return Outcome("done", f"retention set to {policy.log_retention_days} days")
