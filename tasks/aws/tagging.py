"""Tags of many resources in one paged call: the Resource Groups Tagging API.

For services whose listings carry no tags (CloudWatch Logs, Kinesis, ...), one GetResources
per region and service replaces one tag call per resource. It returns tagged resources only,
which is all an opt-out check needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.aws.clients import Account, paginate
from tasks.aws.permissions import requires


@requires("tag:GetResources")
def tags_by_arn(account: Account, region: str, resource_types: Sequence[str]) -> dict[str, dict[str, str]]:
    """ARN -> tags of every tagged resource of `resource_types` (`logs`, `kinesis:stream`, ...)."""
    tagging = account.client("resourcegroupstaggingapi", region)
    return {
        r["ResourceARN"]: {t["Key"]: t["Value"] for t in r.get("Tags", [])}
        for r in paginate(tagging, "get_resources", "ResourceTagMappingList",
                          ResourceTypeFilters=list(resource_types))
    }
