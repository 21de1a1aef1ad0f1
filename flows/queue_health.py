"""queue-health: dead-letter queues with messages and source queues whose backlog is getting old.

Collect one region at a time (queues with redrive policies and depths, then the age of the
oldest message from CloudWatch in batches of 500), judge with `rules.queue_health`, and tell:
a drained dead-letter queue resolves its finding.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import load_store
from rules.findings import Finding
from rules.queue_health import QueuePolicy, judge_queues, metric_rows
from tasks.aws.clients import account_regions, error_summary
from tasks.aws.sqs import get_oldest_message_ages, list_queues
from tasks.notify import on_flow_failure
from tasks.tell import tell

JOB = "queue-health"
DEFAULT_POLICY = QueuePolicy()


@flow(name=JOB, on_failure=[on_flow_failure])
def queue_health(
    policy: QueuePolicy = DEFAULT_POLICY,
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    name_prefix: str = "",
    aws_credentials: str = "aws",
    store: str = "ops-store",
    now: datetime | None = None,
) -> list[Finding]:
    """Judge every queue whose name starts with `name_prefix`.

    `regions` None means every enabled region; `role_arns` adds accounts to assume into.
    """
    ops_store = load_store(store)
    creds = load_block(AwsCredentials, aws_credentials, "aws_credentials")
    now = now or datetime.now(timezone.utc)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=policy.metric_lookback_minutes)
    targets, errors = account_regions(creds, role_arns, regions, "sqs")
    findings: list[Finding] = []
    history: list[dict] = []
    queues_seen = 0
    for scope, account, region in targets:
        try:
            queues = list_queues(account, region, name_prefix)
            ages, _ = get_oldest_message_ages(account, region, [q.name for q in queues], start, end)
        except Exception as exc:  # one region failing must not sink the rest
            errors[scope] = error_summary(exc)
            continue
        findings += judge_queues(queues, ages, policy, scope)
        history += metric_rows(queues, ages, scope, now)
        queues_seen += len(queues)
    ops_store.record_metrics(JOB, history)
    tell(JOB, findings, ops_store, now, repeat_interval=timedelta(hours=policy.repeat_interval_hours),
         errors=errors, notes=[f"{queues_seen} queues in {len(targets)} regions"])
    return findings
