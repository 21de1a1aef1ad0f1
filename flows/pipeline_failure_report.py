"""pipeline-failure-report: chat messages about any failed, crashed, timed-out, late or slow
flow run, or a completed one whose tasks failed; many failures at once in grouped messages.

Started by the "pipeline" automations (deployments/automations.py) with a run's id, for flows
that carry no hook of ours; for a late run, a while after it turned Late. Its schedule runs it
without a run id: the sweep for slow runs. The deployment runs one report at a time
(`concurrency_limit` 1, `ENQUEUE`): the others wait, and the running one first gathers their
runs, until no new report came for `storm_window_seconds`, then cancels them, so a storm of
failures costs a report or two and is announced in grouped messages.

Collect the runs, their failed task runs and logs from the Prefect API; judge with
`rules.pipeline_failures`; tell by emitting the `on_flow_failure` hook's event (one message per
run, threaded per deployment per day) or a job message (grouped and slow runs), and marking
each run announced: a run whose hook already announced it, or that an earlier report covered,
is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as runtime_flow_run

from rules.i18n import LANGUAGES, in_every_language
from rules.pipeline_failures import (
    ReportPolicy,
    RunRecord,
    TaskRunRecord,
    plan_reports,
    report,
    seconds_to_settle,
    slow_report,
    slow_runs,
    storm_reports,
)
from tasks.notify import (
    EVENT_FLOW_FAILED,
    EVENT_FLOW_GROUPED,
    EVENT_FLOW_SLOW,
    emit_flow_failure,
    emit_job_message,
    mark_flow_runs,
    on_flow_failure,
    run_url,
)
from tasks.pipeline_runs import (
    announced_runs,
    cancel_reports,
    gather_reports_due,
    previous_report_end,
    read_durations,
    read_failed_task_runs,
    read_log_records,
    read_running_runs,
    read_runs,
)

JOB = "pipeline-failure-report"
DEFAULT_POLICY = ReportPolicy()


@flow(name=JOB, on_failure=[on_flow_failure])
def pipeline_failure_report(
    flow_run_id: UUID | None = None,
    exclude_tags: tuple[str, ...] = (),
    policy: ReportPolicy = DEFAULT_POLICY,
) -> list[str]:
    """Announce run `flow_run_id` and the runs of reports that never started, each once, unless
    it carries one of `exclude_tags`; without a run id, also the runs that are slow. Returns the
    subjects sent.

    A completed run is announced only when some of its tasks failed after their retries, a
    scheduled one only while it is still Late.
    """
    due = gather_reports_due(policy.storm_window_seconds, policy.storm_max_seconds, policy.lookback_minutes)
    ids = list(dict.fromkeys([*([str(flow_run_id)] if flow_run_id else []), *(run for _, run in due)]))
    runs = read_runs(ids)
    time.sleep(seconds_to_settle(runs, previous_report_end(), datetime.now(timezone.utc), policy))
    failed_tasks = read_failed_task_runs(ids)
    announced = announced_runs(ids, [EVENT_FLOW_FAILED, EVENT_FLOW_GROUPED])
    plan = plan_reports(runs, failed_tasks, announced, exclude_tags, policy)
    for run in runs:
        if run.id in plan.skipped:
            get_run_logger().info("No report for run %s: %s", run.name, plan.skipped[run.id])
    subjects = [announce_run(run, failed_tasks.get(run.id, []), policy) for run in plan.individual]
    subjects += announce_storm(plan.grouped, policy)
    if due:
        cancel_reports([report_run for report_run, _ in due], f"its run was judged by report {runtime_flow_run.name}")
    if flow_run_id is None:
        subjects += announce_slow_runs(exclude_tags, policy)
    return subjects


def announce_run(run: RunRecord, failed_tasks: Sequence[TaskRunRecord], policy: ReportPolicy) -> str:
    """One message about one run, with its logs; the subject sent."""
    records = read_log_records(run.id, policy.log_lines)
    link, now = run_url(run.id), datetime.now(timezone.utc)
    messages = in_every_language(lambda lang: report(run, failed_tasks, records, link, now, policy, lang))
    task = failed_tasks[-1].task_name if failed_tasks else None
    emit_flow_failure(run.id, run.name, run.flow_id, run.flow_name, run.deployment, run.state_name, task,
                      messages)
    return messages["en"][0]


def announce_storm(runs: Sequence[RunRecord], policy: ReportPolicy) -> list[str]:
    """Grouped messages naming every run; each run marked announced. The subjects sent."""
    if not runs:
        return []
    links = {run.id: run_url(run.id) for run in runs}
    rendered = {lang: storm_reports(runs, links, policy.storm_runs_per_message, lang) for lang in LANGUAGES}
    for part in range(len(rendered["en"])):
        emit_job_message(JOB, {lang: rendered[lang][part] for lang in LANGUAGES})
    mark_flow_runs(EVENT_FLOW_GROUPED, [(run.id, run.name) for run in runs])
    return [subject for subject, _ in rendered["en"]]


def announce_slow_runs(exclude_tags: Sequence[str], policy: ReportPolicy) -> list[str]:
    """One message per run slower than its deployment's usual, once per run. The subjects sent."""
    running = read_running_runs()
    durations = read_durations([r.deployment_id for r in running if r.deployment_id], policy.slow_history_runs)
    slow = slow_runs(running, durations, datetime.now(timezone.utc), policy, exclude_tags, exclude_flows=[JOB])
    announced = announced_runs([s.run.id for s in slow], [EVENT_FLOW_SLOW])
    subjects = []
    for found in slow:
        if found.run.id in announced:
            continue
        link = run_url(found.run.id)
        messages = in_every_language(lambda lang, found=found, link=link: slow_report(found, link, policy, lang))
        emit_job_message(JOB, messages)
        mark_flow_runs(EVENT_FLOW_SLOW, [(found.run.id, found.run.name)])
        subjects.append(messages["en"][0])
    return subjects
