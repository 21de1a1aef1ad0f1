"""CloudWatch metrics in bulk: GetMetricData with up to 500 queries per call, paged.

Callers describe what they want as `MetricQuery`s; one call covers hundreds of resources,
so work grows with API pages, not with resources x metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasks.aws.permissions import requires

MAX_QUERIES_PER_CALL = 500


@dataclass(frozen=True)
class MetricQuery:
    """One metric series: `id` must be unique in a request (letters, digits, `_`; starts lowercase)."""

    id: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    stat: str = "Sum"
    period: int = 300


@dataclass
class MetricData:
    """Series by query id: (timestamp, value) pairs, oldest first; and how many calls it took."""

    series: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    calls: int = 0

    def values(self, query_id: str) -> list[float]:
        return [v for _, v in self.series.get(query_id, [])]


def _query(q: MetricQuery) -> dict[str, Any]:
    return {
        "Id": q.id,
        "MetricStat": {
            "Metric": {
                "Namespace": q.namespace,
                "MetricName": q.metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in q.dimensions.items()],
            },
            "Period": q.period,
            "Stat": q.stat,
        },
        "ReturnData": True,
    }


@requires("cloudwatch:GetMetricData")
def get_metric_data(
    cloudwatch: Any, queries: Sequence[MetricQuery], start: datetime, end: datetime
) -> MetricData:
    """Fetch every query's datapoints in [start, end) in batches of 500, following NextToken."""
    result = MetricData()
    for i in range(0, len(queries), MAX_QUERIES_PER_CALL):
        batch = [_query(q) for q in queries[i : i + MAX_QUERIES_PER_CALL]]
        kwargs: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending"}
        while True:
            page = cloudwatch.get_metric_data(**kwargs)
            result.calls += 1
            for item in page.get("MetricDataResults", []):
                pairs = list(zip(item.get("Timestamps", []), item.get("Values", []), strict=False))
                result.series.setdefault(item["Id"], []).extend(pairs)
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
    for pairs in result.series.values():
        pairs.sort(key=lambda p: p[0])
    return result
