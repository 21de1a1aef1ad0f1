"""Benchmark: measuring 1,000 volumes for gp3 sizing (the `volume-activity` collector).

    uv run python bench/ebs_sizing.py [--volumes 1000 --days 14]

Seeds one region of moto (in process) with `--volumes` attached gp2 volumes and one metric
point per volume, then times `volume_activity` over `--days` and prints the GetMetricData
calls it made and the calls the real API would need: 500 queries per call, and at most
100,800 datapoints per response (six series a volume: four hourly, two daily). moto returns
all datapoints in one page, so its call count is the query-bound part only.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from datetime import datetime, timedelta, timezone

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from prefect_aws import AwsCredentials  # noqa: E402

from tasks.aws import ebs  # noqa: E402
from tasks.aws.clients import Account  # noqa: E402
from tasks.aws.cloudwatch import (
    MAX_QUERIES_PER_CALL,  # noqa: E402
    get_metric_data,  # noqa: E402
)
from tasks.aws.ebs import volume_activity  # noqa: E402
from tasks.aws.ec2 import list_volumes  # noqa: E402

MAX_DATAPOINTS_PER_CALL = 100_800
SERIES_PER_VOLUME = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=1000)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        for _ in range(args.volumes):
            vid = ec2.create_volume(AvailabilityZone="us-east-1a", Size=200, VolumeType="gp2")["VolumeId"]
            cw.put_metric_data(Namespace="AWS/EBS", MetricData=[{
                "MetricName": "VolumeReadOps", "Dimensions": [{"Name": "VolumeId", "Value": vid}],
                "Timestamp": now - timedelta(hours=2), "Value": 6000.0}])
        account = Account(AwsCredentials(region_name="us-east-1"))
        volumes = list_volumes(account, "us-east-1")
        calls = []

        def counted(*a, **kw):
            data = get_metric_data(*a, **kw)
            calls.append(data.calls)
            return data
        ebs.get_metric_data = counted
        started = time.perf_counter()
        found = volume_activity.fn(account, "us-east-1", volumes, now - timedelta(days=args.days), now)
        took = time.perf_counter() - started
    points = args.volumes * (4 * 24 * args.days + 2 * args.days)
    by_queries = math.ceil(args.volumes * SERIES_PER_VOLUME / MAX_QUERIES_PER_CALL)
    print(f"volumes measured: {len(found)} in {took:.1f} s, {sum(calls)} GetMetricData calls (moto, in process)")
    print(f"GetMetricData calls for {args.volumes * SERIES_PER_VOLUME} series: {by_queries} by the 500-query bound; "
          f"a full {args.days}-day history is {points:,} datapoints -> at least "
          f"{max(by_queries, math.ceil(points / MAX_DATAPOINTS_PER_CALL))} calls on the real API")


if __name__ == "__main__":
    main()
