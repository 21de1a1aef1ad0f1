"""pipeline-failure-report: one chat message about any failed, crashed, timed-out or late flow
run, or a completed one whose tasks failed.

Started by the "pipeline" automations (deployments/automations.py) with the run's id, for
flows that carry no hook of ours; for a late run, a while after it turned Late. Collect the run, its failed task runs and its logs from
the Prefect API; judge with `rules.pipeline_failures`; tell by emitting the same event as the
`on_flow_failure` hook, which the "flow run failed" automation sends to Google Chat (threaded
per deployment per day). That event also marks the run as announced: a run whose hook already
announced it, or that an earlier report covered, is skipped.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from uuid import UUID

from prefect import flow, get_run_logger

from rules.i18n import in_every_language
from rules.pipeline_failures import ReportPolicy, report, seconds_to_wait, skip_reason
from tasks.notify import emit_flow_failure, on_flow_failure, run_url
from tasks.pipeline_runs import read_failed_task_runs, read_log_records, read_run, was_announced

JOB = "pipeline-failure-report"
DEFAULT_POLICY = ReportPolicy()


@flow(name=JOB, on_failure=[on_flow_failure])
def pipeline_failure_report(
    flow_run_id: UUID,
    exclude_tags: tuple[str, ...] = (),
    policy: ReportPolicy = DEFAULT_POLICY,
) -> str | None:
    """Announce run `flow_run_id` once, unless it carries one of `exclude_tags`; returns the subject sent.

    A completed run is announced only when some of its tasks failed after their retries, a
    scheduled one only while it is still Late.
    """
    run = read_run(flow_run_id)
    time.sleep(seconds_to_wait(run, datetime.now(timezone.utc), policy))
    failed_tasks = read_failed_task_runs(flow_run_id)
    skip = skip_reason(run, failed_tasks, exclude_tags, was_announced(flow_run_id))
    if skip:
        get_run_logger().info("No report for run %s: %s", run.name, skip)
        return None
    records = read_log_records(flow_run_id, policy.log_lines)
    link, now = run_url(flow_run_id), datetime.now(timezone.utc)
    messages = in_every_language(lambda lang: report(run, failed_tasks, records, link, now, policy, lang))
    task = failed_tasks[-1].task_name if failed_tasks else None
    emit_flow_failure(run.id, run.name, run.flow_id, run.flow_name, run.deployment, run.state_name, task,
                      messages)
    return messages["en"][0]
