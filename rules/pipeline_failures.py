"""Failure reports for any flow run, read back from the Prefect API: what to say, and whether to.

Pure: `tasks/pipeline_runs.py` reads the run, its task runs and logs into these records;
`flows/pipeline_failure_report.py` wires them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rules.i18n import translations
from rules.messages import MAX_BODY_CHARS, TaskFailure, flow_failure_message, mentions, state_label
from rules.text import redact, truncate

COLLECTION_TAG = "dataplatform-ops"
ERROR = 40  # logging.ERROR: Prefect logs a failed task's traceback at this level
TRACEBACK_LINES = 8


class ReportPolicy(BaseModel):
    """What a failure report shows, and how long it waits for a hook that may announce the run."""

    model_config = ConfigDict(extra="forbid")

    log_lines: int = Field(default=15, ge=0, le=200, description="Last log records shown.")
    announce_grace_seconds: float = Field(
        default=10, ge=0, le=300,
        description=("Seconds after the run ended before checking whether its own failure hook "
                     "announced it (the server stores events within about 5 seconds)."),
    )


@dataclass(frozen=True)
class LogRecord:
    timestamp: datetime
    level: int
    message: str
    task_run_id: str | None = None


@dataclass(frozen=True)
class TaskRunRecord:
    id: str
    task_name: str
    name: str
    state_message: str
    attempts: int  # runs used, retries included
    max_attempts: int


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    flow_id: str
    flow_name: str
    deployment: str | None
    state_type: str  # FAILED, CRASHED or COMPLETED (with failed tasks)
    state_name: str
    state_message: str
    tags: Sequence[str] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)  # already masked
    owners: Sequence[str] = ()  # chat user ids from `owner:` tags
    attempts: int = 1
    max_attempts: int = 1
    ended: datetime | None = None
    scheduled: datetime | None = None  # when it was expected to start


def seconds_to_wait(run: RunRecord, now: datetime, policy: ReportPolicy) -> float:
    """How long to wait until a failure hook's announcement of `run` would be visible.

    Only a Failed run runs failure hooks (a crash kills them; late and completed runs have none).
    """
    if run.state_type != "FAILED":
        return 0.0
    if run.ended is None:
        return policy.announce_grace_seconds
    return max(0.0, policy.announce_grace_seconds - (now - run.ended).total_seconds())


def skip_reason(run: RunRecord, failed_tasks: Sequence[TaskRunRecord], exclude_tags: Sequence[str],
                announced: bool) -> str | None:
    """Why this run gets no report, or None when it gets one."""
    if announced:
        return "already announced (the flow's own failure hook, or an earlier report)"
    if excluded := sorted(set(run.tags) & set(exclude_tags)):
        return f"tagged {', '.join(excluded)}"
    if run.state_type in ("FAILED", "CRASHED"):
        if COLLECTION_TAG in run.tags:
            return "a job of this collection: its failure hook and crash automation announce it"
        return None
    if run.state_type == "COMPLETED":
        return None if failed_tasks else "completed without failed tasks"
    if run.state_name == "Late":
        return None
    return f"{run.state_name}: nothing to report (a late run has started since, or was cancelled)"


def _record_lines(record: LogRecord) -> list[str]:
    """One log record as lines; a traceback is cut to its last lines so it cannot crowd out the rest."""
    first, *rest = record.message.rstrip().splitlines() or [""]
    level = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(record.level, str(record.level))
    return [f"{record.timestamp:%H:%M:%S} {level} {first}", *("  " + ln for ln in rest[-TRACEBACK_LINES:])]


def log_lines(records: Sequence[LogRecord], limit: int) -> list[str]:
    """The last `limit` records, oldest first (for a crash: the lines that reached the API before it)."""
    chosen = sorted(records, key=lambda r: r.timestamp)[-limit:] if limit else []
    return [line for record in chosen for line in _record_lines(record)]


def task_failure(task_run: TaskRunRecord, records: Sequence[LogRecord]) -> TaskFailure:
    """A failed task run, with the exception and traceback tail from its ERROR log record."""
    errors = [r for r in records if r.task_run_id == task_run.id and r.level >= ERROR]
    lines = errors[-1].message.rstrip().splitlines() if errors else []
    has_traceback = any(ln.startswith("Traceback (most recent call last)") for ln in lines)
    return TaskFailure(
        task_name=task_run.task_name,
        task_run_name=task_run.name,
        exception=lines[-1] if has_traceback else task_run.state_message,
        traceback_tail=tuple(lines[-TRACEBACK_LINES:]) if has_traceback else (),
        attempts=task_run.attempts,
        max_attempts=task_run.max_attempts,
    )


def failure_report(run: RunRecord, failed_tasks: Sequence[TaskRunRecord], records: Sequence[LogRecord],
                   run_url: str | None, log_limit: int, language: str = "en") -> tuple[str, str]:
    """Subject and body of the one message about a failed or crashed run, in the hook's shape."""
    return flow_failure_message(
        flow_name=run.flow_name,
        flow_run_name=run.name,
        state_name=run.state_name,
        state_message=run.state_message,
        log_lines=log_lines(records, log_limit),
        parameters=run.parameters,
        deployment=run.deployment,
        run_url=run_url,
        failure=task_failure(failed_tasks[-1], records) if failed_tasks else None,
        flow_attempt=(run.attempts, run.max_attempts),
        owners=run.owners,
        language=language,
    )


def late_report(run: RunRecord, now: datetime, run_url: str | None, language: str = "en") -> tuple[str, str]:
    """Subject and body of the one message about a scheduled run that has not started."""
    _ = translations(language).gettext
    tag = f"{run.flow_name}/{run.deployment}" if run.deployment else run.flow_name
    if run.scheduled:
        late = _("run {run} Late: not started {minutes} min after its scheduled time").format(
            run=run.name, minutes=f"{(now - run.scheduled).total_seconds() / 60:.0f}")
    else:
        late = _("run {run} Late: not started long after its scheduled time").format(run=run.name)
    subject = truncate(f"[{tag}] {late}", 200)
    owners = mentions(run.owners)
    if run.scheduled:
        first = _("Flow {flow}, run {run}: still not started, scheduled for {when} UTC").format(
            flow=run.flow_name, run=run.name, when=f"{run.scheduled:%Y-%m-%d %H:%M}")
    else:
        first = _("Flow {flow}, run {run}: still not started").format(flow=run.flow_name, run=run.name)
    body = [f"{owners + ' ' if owners else ''}{first}"]
    if run.deployment:
        body.append(_("Deployment: {deployment}").format(deployment=run.deployment))
    if run_url:
        body.append(_("Run: {url}").format(url=run_url))
    body += ["", _("Usual causes: no worker polls its work pool or queue, the pool or deployment is "
                   "paused, or a concurrency limit is reached by runs that do not finish.")]
    return redact(subject), truncate(redact("\n".join(body)), MAX_BODY_CHARS)


def task_failures_report(run: RunRecord, failed_tasks: Sequence[TaskRunRecord], records: Sequence[LogRecord],
                         run_url: str | None, log_limit: int, language: str = "en") -> tuple[str, str]:
    """Subject and body of the one message about a completed run whose tasks failed after their retries."""
    t = translations(language)
    _ = t.gettext
    tag = f"{run.flow_name}/{run.deployment}" if run.deployment else run.flow_name
    subject = truncate(f"[{tag}] " + t.ngettext(
        "run {run} completed with {count} failed task", "run {run} completed with {count} failed tasks",
        len(failed_tasks)).format(run=run.name, count=len(failed_tasks)), 200)
    owners = mentions(run.owners)
    body = [f"{owners + ' ' if owners else ''}" + _(
        "Flow {flow}, run {run}: {state}, but these tasks failed after their retries:").format(
        flow=run.flow_name, run=run.name, state=state_label(run.state_name, language))]
    for task_run in failed_tasks:
        failure = task_failure(task_run, records)
        body.append("• " + _("{task} ({task_run}), attempt {attempt} of {attempts}: {error}").format(
            task=failure.task_name, task_run=failure.task_run_name, attempt=failure.attempts,
            attempts=failure.max_attempts, error=truncate(failure.exception, 500)))
    if run.deployment:
        body.append(_("Deployment: {deployment}").format(deployment=run.deployment))
    if run_url:
        body.append(_("Run: {url}").format(url=run_url))
    if lines := log_lines(records, log_limit):
        body += ["", _("Last log lines:"), truncate("\n".join(lines), 6_000)]
    return redact(subject), truncate(redact("\n".join(body)), MAX_BODY_CHARS)


def report(run: RunRecord, failed_tasks: Sequence[TaskRunRecord], records: Sequence[LogRecord],
           run_url: str | None, now: datetime, policy: ReportPolicy, language: str = "en") -> tuple[str, str]:
    """The message for a run that `skip_reason` let through."""
    if run.state_name == "Late":
        return late_report(run, now, run_url, language)
    if run.state_type == "COMPLETED":
        return task_failures_report(run, failed_tasks, records, run_url, policy.log_lines, language)
    return failure_report(run, failed_tasks, records, run_url, policy.log_lines, language)
