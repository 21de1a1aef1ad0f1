"""queue-health: pure judgement, then the flow on moto SQS + CloudWatch (ages planted with
PutMetricData, since moto's SQS publishes no metrics)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from prefect_aws import AwsCredentials

from flows.queue_health import queue_health
from rules.findings import Severity
from rules.queue_health import Queue, QueuePolicy, dead_letter_sources, judge_queues
from tasks.aws.clients import Account
from tasks.aws.permissions import permissions_of
from tasks.aws.sqs import get_oldest_message_ages, list_queues
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

REGION = "us-east-1"
SCOPE = f"123456789012/{REGION}"
ARN = f"arn:aws:sqs:{REGION}:123456789012:"


def q(name: str, visible: int = 0, dlq: str | None = None) -> Queue:
    return Queue(name=name, arn=ARN + name, region=REGION, visible=visible,
                 dead_letter_target_arn=ARN + dlq if dlq else None)


def test_dead_letter_queues_are_the_redrive_targets():
    queues = [q("a", dlq="shared-dlq"), q("b", dlq="shared-dlq"), q("shared-dlq"), q("c")]
    assert dead_letter_sources(queues) == {ARN + "shared-dlq": ["a", "b"]}


@pytest.mark.parametrize(
    ("visible", "age", "expected"),
    [
        (0, None, []),
        (1, 7200.0, [("dlq-messages", Severity.WARNING, "1 messages in the dead-letter queue of src; oldest 2.0 h old")]),
        (100, None, [("dlq-messages", Severity.CRITICAL,
                      "100 messages in the dead-letter queue of src; age of the oldest message unknown (no CloudWatch data)")]),
    ],
)
def test_dead_letter_queue(visible, age, expected):
    ages = {"src-dlq": age} if age is not None else {}
    found = judge_queues([q("src", dlq="src-dlq"), q("src-dlq", visible)], ages, QueuePolicy(), SCOPE)
    assert [(f.kind, f.severity, f.reason) for f in found] == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [(899.0, None), (900.0, Severity.WARNING), (3600.0, Severity.CRITICAL)],
)
def test_backlog_age(age, expected):
    found = judge_queues([q("src", 5)], {"src": age}, QueuePolicy(), SCOPE)
    assert [(f.kind, f.severity) for f in found] == ([("queue-backlog", expected)] if expected else [])


def test_policy_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="backlog_age_critical_minutes"):
        QueuePolicy(backlog_age_warning_minutes=30, backlog_age_critical_minutes=10)


# --- moto ----------------------------------------------------------------------------------


def make_queue(sqs, name: str, dlq_url: str | None = None) -> str:
    attributes = {}
    if dlq_url:
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]


def plant_age(name: str, at: datetime, seconds: float) -> None:
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/SQS", MetricData=[
        {"MetricName": "ApproximateAgeOfOldestMessage", "Dimensions": [{"Name": "QueueName", "Value": name}],
         "Timestamp": at, "Value": seconds}])


def plant_queues(now: datetime) -> str:
    """A DLQ holding 3 messages, a late queue, and healthy look-alikes (BACKLOGGED); -> the DLQ's URL."""
    sqs = boto3.client("sqs", region_name=REGION)
    orders_dlq = make_queue(sqs, "orders-dlq")
    make_queue(sqs, "orders", orders_dlq)
    make_queue(sqs, "payments", make_queue(sqs, "payments-dlq"))  # an empty DLQ is fine
    events = make_queue(sqs, "events")
    make_queue(sqs, "fresh")
    for i in range(3):
        sqs.send_message(QueueUrl=orders_dlq, MessageBody=f"order {i}")
    sqs.send_message(QueueUrl=events, MessageBody="late")
    plant_age("orders-dlq", now - timedelta(minutes=2), 7_200)
    plant_age("events", now - timedelta(minutes=3), 600)
    plant_age("events", now - timedelta(minutes=1), 1_800)  # the latest value counts
    plant_age("fresh", now - timedelta(minutes=1), 30)
    return orders_dlq


BACKLOGGED = [
    ("dlq-messages", "orders-dlq", "warning",
     "3 messages in the dead-letter queue of orders; oldest 2.0 h old"),
    ("queue-backlog", "events", "warning",
     "oldest 30 min old, over the 15 min threshold; 1 visible, 0 in flight"),
]


def test_dlq_with_messages_is_found_then_resolved_when_drained(aws, store):
    AwsCredentials(region_name=REGION).save(block := f"aws-{uuid.uuid4().hex[:8]}")
    now = datetime.now(timezone.utc)
    orders_dlq = plant_queues(now)
    found = queue_health(regions=[REGION], aws_credentials=block, store=store._block_document_name, now=now).findings
    assert sorted((f.kind, f.resource_id, f.severity.value, f.reason) for f in found) == BACKLOGGED
    dlq = next(f for f in found if f.kind == "dlq-messages")
    assert dlq.scope == SCOPE and dlq.numbers["visible"] == 3 and dlq.numbers["sources"] == ["orders"]
    history = store.metric_history("queue-health", "sqs.dlq_visible")
    assert {(r["subject"], r["value"]) for r in history} == {
        (f"{SCOPE}/orders-dlq", 3), (f"{SCOPE}/payments-dlq", 0)}

    boto3.client("sqs", region_name=REGION).purge_queue(QueueUrl=orders_dlq)
    later = now + timedelta(minutes=30)  # the planted ages are out of the lookback by then
    assert queue_health(regions=[REGION], aws_credentials=block, store=store._block_document_name,
                        now=later).findings == []
    resolved = store.findings_of("queue-health", "resolved")
    assert sorted(r["resource_id"] for r in resolved) == ["events", "orders-dlq"]


def test_listing_pages_past_1000_and_ages_batch(aws):
    sqs = boto3.client("sqs", region_name=REGION)
    for i in range(1_005):
        sqs.create_queue(QueueName=f"q-{i:04d}")
    account = Account(AwsCredentials(region_name=REGION))
    queues = list_queues.fn(account, REGION)
    assert len(queues) == 1_005
    assert len(list_queues.fn(account, REGION, "q-100")) == 5  # q-1000 .. q-1004
    now = datetime.now(timezone.utc)
    plant_age("q-1004", now - timedelta(minutes=1), 42)
    ages, calls = get_oldest_message_ages.fn(account, REGION, [x.name for x in queues],
                                             now - timedelta(minutes=15), now)
    assert ages == {"q-1004": 42} and calls == 3


def test_declared_permissions():
    assert permissions_of([list_queues, get_oldest_message_ages]) == {
        "sqs:ListQueues", "sqs:GetQueueAttributes", "cloudwatch:GetMetricData"}


@scenario_for("queue-health")
def least_privilege_scenario(aws):
    now = datetime.now(timezone.utc)
    plant_queues(now)
    return Scenario(queue_health, plain_creds(), dict(regions=["us-east-1"], now=now),
                    {r for _, r, _, _ in BACKLOGGED}, drop="sqs:GetQueueAttributes")
