"""GetMetricData batching on moto: one call per 500 queries, values per series."""

from datetime import datetime, timedelta, timezone

import boto3

from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.permissions import permissions_of


def test_batches_of_500_and_values_per_series(aws):
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    for i in range(3):
        cw.put_metric_data(Namespace="Test", MetricData=[
            {"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": f"fn{i}"}],
             "Timestamp": now - timedelta(minutes=5), "Value": float(i + 1)}])
    queries = [MetricQuery(id=f"q{i}", namespace="Test", metric="Errors",
                           dimensions={"FunctionName": f"fn{i}"}) for i in range(1001)]
    data = get_metric_data(cw, queries, now - timedelta(hours=1), now + timedelta(minutes=5))
    assert data.calls == 3
    assert [sum(data.values(f"q{i}")) for i in range(3)] == [1.0, 2.0, 3.0]
    assert data.values("q999") == []
    assert permissions_of([get_metric_data]) == {"cloudwatch:GetMetricData"}
