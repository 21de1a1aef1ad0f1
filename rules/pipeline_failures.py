"""Failure reports for any flow run, read back from the Prefect API: what to say, and whether to.

Also the two judgements that look at many runs at once: a storm (many failed runs gathered by
one report: one grouped message instead of one each) and a slow run (running much longer than
its deployment's completed runs usually take).

Pure: `tasks/pipeline_runs.py` reads the runs, their task runs and logs into these records;
`flows/pipeline_failure_report.py` wires them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rules.i18n import translations
from rules.messages import MAX_BODY_CHARS, TaskFailure, flow_failure_message, mentions, state_label
from rules.text import redact, truncate

COLLECTION_TAG = "dataplatform-ops"
STORM_TAG = "pipeline-failures"  # the subject tag, so storm messages share one thread a day
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
    storm_window_seconds: float = Field(
        default=10, ge=0, le=300,
        description=("Seconds a report waits for more failures before it sends, again after each "
                     "new one; failures gathered this way are judged together."),
    )
    storm_max_seconds: float = Field(
        default=120, ge=0, le=1800, description="Longest a report keeps gathering failures before it sends.")
    storm_threshold: int = Field(
        default=5, ge=2, le=1000,
        description="From this many failed runs gathered at once, one grouped message lists them all.")
    storm_runs_per_message: int = Field(
        default=40, ge=1, le=200, description="Failed runs listed in one grouped message; more take more messages.")
    lookback_minutes: float = Field(
        default=60, ge=1, le=7 * 24 * 60,
        description="Report runs waiting longer than this are left to run themselves, not gathered.",
    )
    slow_factor: float = Field(
        default=3, ge=1, le=100, description="A run is slow past this many times its deployment's usual duration.")
    slow_percentile: float = Field(
        default=95, gt=0, le=100, description="The usual duration: this percentile of the completed runs.")
    slow_min_history: int = Field(
        default=10, ge=1, le=200, description="Completed runs a deployment needs before any of its runs is called slow.")
    slow_history_runs: int = Field(
        default=50, ge=1, le=200, description="Most recent completed runs read per deployment.")
    slow_min_seconds: float = Field(
        default=300, ge=0, description="A run is never called slow before it has run this long.")


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
    started: datetime | None = None
    deployment_id: str | None = None


def seconds_to_wait(run: RunRecord, now: datetime, policy: ReportPolicy) -> float:
    """How long to wait until a failure hook's announcement of `run` would be visible.

    Only a Failed run runs failure hooks (a crash kills them; late and completed runs have none).
    """
    if run.state_type != "FAILED":
        return 0.0
    if run.ended is None:
        return policy.announce_grace_seconds
    return max(0.0, policy.announce_grace_seconds - (now - run.ended).total_seconds())


def seconds_to_settle(runs: Sequence[RunRecord], previous_report_end: datetime | None, now: datetime,
                      policy: ReportPolicy) -> float:
    """How long until every announcement of `runs` would be visible: their failure hooks', and
    the previous report's (reports run one at a time, and the server stores events late)."""
    waits = [seconds_to_wait(run, now, policy) for run in runs]
    if previous_report_end is not None:
        waits.append(policy.announce_grace_seconds - (now - previous_report_end).total_seconds())
    return max([0.0, *waits])


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


def _where(run: RunRecord, run_url: str | None, _: Callable[[str], str]) -> list[str]:
    """The deployment and link lines of a report about one run."""
    lines = [_("Deployment: {deployment}").format(deployment=run.deployment)] if run.deployment else []
    return lines + ([_("Run: {url}").format(url=run_url)] if run_url else [])


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
    body += _where(run, run_url, _)
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
    body += _where(run, run_url, _)
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


FAILURE_STATES = ("FAILED", "CRASHED")  # TimedOut is a Failed state


@dataclass(frozen=True)
class ReportPlan:
    """What one report run sends for the runs it gathered."""

    individual: list[RunRecord]  # one message each (failed, crashed, late, tasks failed)
    grouped: list[RunRecord]  # one storm message (or a few) lists them all
    skipped: dict[str, str]  # run id -> why it gets no message


def plan_reports(runs: Sequence[RunRecord], failed_tasks: Mapping[str, Sequence[TaskRunRecord]],
                 announced: set[str], exclude_tags: Sequence[str], policy: ReportPolicy) -> ReportPlan:
    """Each run once: skipped, in a message of its own, or, when at least `storm_threshold`
    failed runs came at once, listed in a grouped message (a warehouse outage fails many
    pipelines; one message each would flood the space and trip Google Chat's rate limit)."""
    reportable, skipped = [], {}
    for run in {r.id: r for r in runs}.values():
        reason = skip_reason(run, failed_tasks.get(run.id, ()), exclude_tags, run.id in announced)
        if reason:
            skipped[run.id] = reason
        else:
            reportable.append(run)
    failures = [r for r in reportable if r.state_type in FAILURE_STATES]
    if len(failures) < policy.storm_threshold:
        return ReportPlan(individual=reportable, grouped=[], skipped=skipped)
    return ReportPlan(individual=[r for r in reportable if r.state_type not in FAILURE_STATES],
                      grouped=failures, skipped=skipped)


def duration_text(seconds: float, language: str = "en") -> str:
    """A duration as people say it: seconds, minutes or hours."""
    _ = translations(language).gettext
    if seconds < 120:
        return _("{n} s").format(n=f"{seconds:.0f}")
    if seconds < 2 * 3600:
        return _("{n} min").format(n=f"{seconds / 60:.0f}")
    return _("{n} h").format(n=f"{seconds / 3600:.1f}")


def _pipeline(run: RunRecord) -> str:
    return f"{run.flow_name}/{run.deployment}" if run.deployment else run.flow_name


def storm_reports(runs: Sequence[RunRecord], run_urls: Mapping[str, str | None], per_message: int,
                  language: str = "en") -> list[tuple[str, str]]:
    """Subjects and bodies of the grouped messages naming every run of a storm, oldest first,
    `per_message` runs each."""
    t = translations(language)
    _ = t.gettext
    ordered = sorted(runs, key=lambda r: (r.ended is None, r.ended.timestamp() if r.ended else 0, r.name))
    ends = [r.ended for r in ordered if r.ended]
    span = (f"{min(ends):%H:%M:%S}", f"{max(ends):%H:%M:%S}") if ends else ("?", "?")
    pipelines = len({_pipeline(r) for r in ordered})
    chunks = [ordered[i:i + per_message] for i in range(0, len(ordered), per_message)]
    owners = mentions(sorted({o for r in ordered for o in r.owners}))
    messages = []
    for part, chunk in enumerate(chunks, 1):
        subject = f"[{STORM_TAG}] " + t.ngettext(
            "{count} run failed at once, {first}–{last} UTC", "{count} runs failed at once, {first}–{last} UTC",
            len(ordered)).format(count=len(ordered), first=span[0], last=span[1])
        if len(chunks) > 1:
            subject += " " + _("(part {part} of {parts})").format(part=part, parts=len(chunks))
        body = [f"{owners + ' ' if owners else ''}" + _(
            "{count} runs of {pipelines} pipelines failed between {first} and {last} UTC: a shared cause "
            "(a warehouse, network or credentials outage) is likely. Each run is listed here instead of "
            "in a message of its own.").format(count=len(ordered), pipelines=pipelines, first=span[0], last=span[1])]
        if len(chunks) > 1:
            body.append(_("Runs {first} to {last} of {count}:").format(
                first=(part - 1) * per_message + 1, last=(part - 1) * per_message + len(chunk), count=len(ordered)))
        for run in chunk:
            why = truncate((run.state_message or "").strip().splitlines()[0] if run.state_message.strip() else "", 160)
            line = f"• {_pipeline(run)} — {run.name}: {state_label(run.state_name, language)}"
            line += f": {why}" if why else ""
            if url := run_urls.get(run.id):
                line += f" {url}"
            body.append(line)
        messages.append((redact(truncate(subject, 200)), truncate(redact("\n".join(body)), MAX_BODY_CHARS)))
    return messages


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: a duration some run really took, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class SlowRun:
    run: RunRecord
    elapsed: float  # seconds running so far
    usual: float  # seconds: the percentile of the deployment's completed runs
    threshold: float  # seconds past which the run is slow
    history: int  # completed runs that `usual` comes from


def slow_runs(running: Sequence[RunRecord], durations: Mapping[str, Sequence[float]], now: datetime,
              policy: ReportPolicy, exclude_tags: Sequence[str] = (), exclude_flows: Sequence[str] = ()) -> list[SlowRun]:
    """Running runs that have run longer than `slow_factor` x the `slow_percentile` of their
    deployment's completed runs (`durations`: deployment id -> seconds), given at least
    `slow_min_history` of them, and at least `slow_min_seconds`."""
    found = []
    for run in running:
        history = durations.get(run.deployment_id or "", ())
        if (run.started is None or len(history) < policy.slow_min_history
                or run.flow_name in exclude_flows or set(run.tags) & set(exclude_tags)):
            continue
        usual = percentile(history, policy.slow_percentile)
        threshold = max(usual * policy.slow_factor, policy.slow_min_seconds)
        elapsed = (now - run.started).total_seconds()
        if elapsed > threshold:
            found.append(SlowRun(run, elapsed, usual, threshold, len(history)))
    return found


def slow_report(slow: SlowRun, run_url: str | None, policy: ReportPolicy, language: str = "en") -> tuple[str, str]:
    """Subject and body of the one message about a run taking much longer than usual."""
    _ = translations(language).gettext
    run = slow.run
    elapsed, usual = duration_text(slow.elapsed, language), duration_text(slow.usual, language)
    subject = truncate(f"[{_pipeline(run)}] " + _("run {run} slow: running for {elapsed}, usually {usual}").format(
        run=run.name, elapsed=elapsed, usual=usual), 200)
    owners = mentions(run.owners)
    body = [f"{owners + ' ' if owners else ''}" + _(
        "Flow {flow}, run {run}: still running after {elapsed}. The last {count} completed runs of this "
        "deployment took at most {usual} (percentile {percentile}); a run is slow past {factor} times "
        "that ({threshold}).").format(
        flow=run.flow_name, run=run.name, elapsed=elapsed, percentile=f"{policy.slow_percentile:g}",
        count=slow.history, usual=usual, factor=f"{policy.slow_factor:g}",
        threshold=duration_text(slow.threshold, language))]
    body += _where(run, run_url, _)
    body += ["", _("Usual causes: a lock or a slow query in the warehouse, much more data than usual, "
                   "or a call that waits without a timeout. This run is announced once.")]
    return redact(subject), truncate(redact("\n".join(body)), MAX_BODY_CHARS)
