"""Queue health: dead-letter queues holding messages, and source queues falling behind.

A dead-letter queue is any queue named as `deadLetterTargetArn` in another queue's redrive
policy; any visible message there is a record a pipeline gave up on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.findings import Finding, Severity


class QueuePolicy(BaseModel):
    """When a dead-letter queue or a backlog deserves a person."""

    model_config = ConfigDict(extra="forbid")

    dlq_min_messages: int = Field(
        default=1, ge=1, description="Visible messages in a dead-letter queue that raise a warning."
    )
    dlq_critical_messages: int = Field(
        default=100, ge=1, description="Visible messages in a dead-letter queue that make it critical."
    )
    backlog_age_warning_minutes: int = Field(
        default=15, ge=1,
        description="Age of the oldest message in a source queue that raises a warning, in minutes.",
    )
    backlog_age_critical_minutes: int = Field(
        default=60, ge=1, description="Age of the oldest message that makes it critical, in minutes."
    )
    metric_lookback_minutes: int = Field(
        default=15, ge=5, le=1440,
        description="How far back to look for the latest ApproximateAgeOfOldestMessage, in minutes.",
    )
    repeat_interval_hours: int = Field(
        default=6, ge=1, description="Hours before a queue still in trouble is announced again."
    )

    @model_validator(mode="after")
    def _critical_above_warning(self) -> QueuePolicy:
        if self.dlq_critical_messages < self.dlq_min_messages:
            raise ValueError("dlq_critical_messages must be at least dlq_min_messages")
        if self.backlog_age_critical_minutes < self.backlog_age_warning_minutes:
            raise ValueError("backlog_age_critical_minutes must be at least backlog_age_warning_minutes")
        return self


@dataclass(frozen=True)
class Queue:
    """A queue's attributes, as read from GetQueueAttributes."""

    name: str
    arn: str
    region: str
    url: str = ""
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead_letter_target_arn: str | None = None
    max_receive_count: int | None = None

    @property
    def console_url(self) -> str:
        return (f"https://{self.region}.console.aws.amazon.com/sqs/v3/home"
                f"?region={self.region}#/queues/{self.url.replace(':', '%3A').replace('/', '%2F')}")


def dead_letter_sources(queues: Iterable[Queue]) -> dict[str, list[str]]:
    """Dead-letter queue ARN -> names of the queues that send to it."""
    sources: dict[str, list[str]] = {}
    for q in queues:
        if q.dead_letter_target_arn:
            sources.setdefault(q.dead_letter_target_arn, []).append(q.name)
    return {arn: sorted(names) for arn, names in sources.items()}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "age of the oldest message unknown (no CloudWatch data)"
    if seconds >= 3600:
        return f"oldest {seconds / 3600:.1f} h old"
    return f"oldest {seconds / 60:.0f} min old"


def judge_queues(
    queues: Sequence[Queue], oldest_age_seconds: Mapping[str, float], policy: QueuePolicy, scope: str
) -> list[Finding]:
    """Findings for dead-letter queues with messages and source queues whose oldest message is old."""
    sources = dead_letter_sources(queues)
    found: list[Finding] = []
    for q in queues:
        age = oldest_age_seconds.get(q.name)
        if q.arn in sources:
            if q.visible < policy.dlq_min_messages:
                continue
            found.append(Finding(
                kind="dlq-messages", resource_id=q.name, scope=scope, url=q.console_url,
                severity=Severity.CRITICAL if q.visible >= policy.dlq_critical_messages else Severity.WARNING,
                reason=(f"{q.visible} messages in the dead-letter queue of {', '.join(sources[q.arn])}; "
                        f"{_age(age)}"),
                numbers={"visible": q.visible, "oldest_age_seconds": age, "sources": sources[q.arn]},
            ))
        elif age is not None and age >= policy.backlog_age_warning_minutes * 60:
            critical = age >= policy.backlog_age_critical_minutes * 60
            found.append(Finding(
                kind="queue-backlog", resource_id=q.name, scope=scope, url=q.console_url,
                severity=Severity.CRITICAL if critical else Severity.WARNING,
                reason=(f"{_age(age)}, over the "
                        f"{policy.backlog_age_critical_minutes if critical else policy.backlog_age_warning_minutes} min "
                        f"threshold; {q.visible} visible, {q.in_flight} in flight"),
                numbers={"oldest_age_seconds": age, "visible": q.visible, "in_flight": q.in_flight},
            ))
    return found


def metric_rows(
    queues: Iterable[Queue], oldest_age_seconds: Mapping[str, float], scope: str, ts: datetime
) -> list[dict]:
    """History: depth of every dead-letter queue, and the oldest-message age where CloudWatch has it."""
    queues = list(queues)
    dlqs = set(dead_letter_sources(queues))
    rows = []
    for q in queues:
        subject = f"{scope}/{q.name}"
        if q.arn in dlqs:
            rows.append({"name": "sqs.dlq_visible", "subject": subject, "ts": ts, "value": q.visible})
        if q.name in oldest_age_seconds:
            rows.append({"name": "sqs.oldest_age_seconds", "subject": subject, "ts": ts,
                         "value": oldest_age_seconds[q.name]})
    return rows
