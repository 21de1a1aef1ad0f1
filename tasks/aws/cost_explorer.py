"""The AWS bill from Cost Explorer: daily unblended cost by service and linked account, and by
cost-allocation tag. One task run per account (Cost Explorer answers for a whole account, or a
whole organization from its management account); a page is a few weeks of days.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.aws_cost import CostLine, TagLine
from tasks.aws.clients import Account
from tasks.aws.permissions import requires

CE_REGION = "us-east-1"  # Cost Explorer's one endpoint
METRIC = "UnblendedCost"


@requires("ce:GetCostAndUsage")
def _results(ce: Any, start: date, end: date, group_by: list[dict[str, str]],
             regions: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    """ResultsByTime across pages. Cost Explorer pages with NextPageToken and botocore has no
    paginator for it, so the shared `paginate` cannot be used here."""
    kwargs: dict[str, Any] = {"TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
                              "Granularity": "DAILY", "Metrics": [METRIC], "GroupBy": group_by}
    if regions:
        kwargs["Filter"] = {"Dimensions": {"Key": "REGION", "Values": list(regions)}}
    while True:
        page = ce.get_cost_and_usage(**kwargs)
        yield from page.get("ResultsByTime", [])
        token = page.get("NextPageToken")
        if not token:
            return
        kwargs["NextPageToken"] = token


@task(name="read-aws-cost", cache_policy=NO_CACHE)
def read_costs(account: Account, start: date, end: date, regions: Sequence[str] | None,
               tag_keys: Sequence[str]) -> tuple[str, list[CostLine], list[TagLine]]:
    """The account's id, and its daily cost in [start, end) by service and linked account, then by
    each tag key."""
    account_id = account.account_id  # sts:GetCallerIdentity needs no permission
    ce = account.client("ce", CE_REGION)
    lines = []
    for result in _results(ce, start, end, [{"Type": "DIMENSION", "Key": "SERVICE"},
                                            {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}], regions):
        day = date.fromisoformat(result["TimePeriod"]["Start"])
        for group in result.get("Groups", []):
            service, linked = group["Keys"]
            lines.append(CostLine(day, service, linked, float(group["Metrics"][METRIC]["Amount"]),
                                  bool(result.get("Estimated"))))
    tags = []
    for key in tag_keys:
        for result in _results(ce, start, end, [{"Type": "TAG", "Key": key}], regions):
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            for group in result.get("Groups", []):
                # Group keys read "team$data"; "team$" is the cost of resources without the tag.
                value = group["Keys"][0].partition("$")[2]
                tags.append(TagLine(day, key, value, float(group["Metrics"][METRIC]["Amount"])))
    return account_id, lines, tags
