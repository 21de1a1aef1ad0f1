"""SQS queues with their redrive policies and depths, and the age of their oldest message.

SQS has no bulk attribute call: one GetQueueAttributes per queue, inside one task run per
region. Ages come from CloudWatch (ApproximateAgeOfOldestMessage) in batches of 500.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.queue_health import Queue
from tasks.aws.clients import Account, paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.permissions import requires

ATTRIBUTES = ["QueueArn", "RedrivePolicy", "ApproximateNumberOfMessages",
              "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]


@task(cache_policy=NO_CACHE)
@requires("sqs:ListQueues", "sqs:GetQueueAttributes")
def list_queues(account: Account, region: str, name_prefix: str = "") -> list[Queue]:
    """Every queue of a region (names starting with `name_prefix`) with its depth and redrive policy."""
    sqs = account.client("sqs", region)
    listing = {"QueueNamePrefix": name_prefix} if name_prefix else {}
    queues = []
    # MaxResults makes ListQueues page past its unpaged limit of 1,000 URLs.
    for url in paginate(sqs, "list_queues", "QueueUrls", MaxResults=1000, **listing):
        try:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=ATTRIBUTES)["Attributes"]
        except sqs.exceptions.QueueDoesNotExist:  # deleted since it was listed
            continue
        redrive = json.loads(attrs.get("RedrivePolicy") or "{}")
        queues.append(Queue(
            name=url.rstrip("/").rsplit("/", 1)[-1],
            arn=attrs["QueueArn"],
            region=region,
            url=url,
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
            dead_letter_target_arn=redrive.get("deadLetterTargetArn"),
            max_receive_count=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
        ))
    return queues


@task(cache_policy=NO_CACHE)
@requires("cloudwatch:GetMetricData")
def get_oldest_message_ages(
    account: Account, region: str, names: Sequence[str], start: datetime, end: datetime
) -> tuple[dict[str, float], int]:
    """Latest ApproximateAgeOfOldestMessage (seconds) per queue that has data in [start, end).

    Returns the ages by queue name and the number of GetMetricData calls made.
    """
    if not names:
        return {}, 0
    queries = [MetricQuery(id=f"q{i}", namespace="AWS/SQS", metric="ApproximateAgeOfOldestMessage",
                           dimensions={"QueueName": name}, stat="Maximum", period=60)
               for i, name in enumerate(names)]
    data = get_metric_data(account.client("cloudwatch", region), queries, start, end)
    ages = {name: data.values(f"q{i}")[-1] for i, name in enumerate(names) if data.values(f"q{i}")}
    return ages, data.calls
