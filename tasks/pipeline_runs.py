"""Reads flow runs back from the Prefect API for failure reports: the runs, their failed task
runs, their logs, whether they were already announced, the other report runs waiting (their
runs are announced by the report that gathers them, and they are cancelled), and the running
runs and completed durations that slow runs are judged by. Any flow's runs: no hook needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from prefect import task
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled

from rules.pipeline_failures import ERROR, LogRecord, RunRecord, TaskRunRecord
from tasks.notify import owners_of, safe_parameters

MAX_FAILED_TASK_RUNS = 200
RUNS_PER_TASK_RUN_READ = 20  # so each run's failed tasks fit in one page
MAX_ERROR_RECORDS = 50
PAGE = 200  # the API's largest page of runs
EVENTS_PAGE = 50  # and of events
MAX_RUNS = PAGE  # running runs read per sweep
MAX_REPORTS_GATHERED = 5_000  # a storm past this is gathered by the next report
ANNOUNCEMENT_DAYS = 7


def _chunks(flow_run_ids: Sequence[UUID | str], size: int) -> list[list[UUID]]:
    ids = [UUID(str(i)) for i in flow_run_ids]
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _records(client: SyncPrefectClient, runs: Iterable[FlowRun]) -> list[RunRecord]:
    flows: dict[UUID, str] = {}
    deployments: dict[UUID, str] = {}
    records = []
    for run in runs:
        if run.flow_id not in flows:
            flows[run.flow_id] = client.read_flow(run.flow_id).name
        if run.deployment_id and run.deployment_id not in deployments:
            deployments[run.deployment_id] = client.read_deployment(run.deployment_id).name
        records.append(RunRecord(
            id=str(run.id), name=run.name, flow_id=str(run.flow_id), flow_name=flows[run.flow_id],
            deployment=deployments.get(run.deployment_id) if run.deployment_id else None,
            state_type=run.state.type.value, state_name=run.state.name,
            state_message=run.state.message or "", tags=list(run.tags),
            parameters=safe_parameters(dict(run.parameters or {})), owners=owners_of(run.tags),
            attempts=max(1, run.run_count), max_attempts=(run.empirical_policy.retries or 0) + 1,
            ended=run.end_time, scheduled=run.expected_start_time, started=run.start_time,
            deployment_id=str(run.deployment_id) if run.deployment_id else None,
        ))
    return records


@task
def read_runs(flow_run_ids: Sequence[UUID | str]) -> list[RunRecord]:
    """The runs as they are now, with their flow and deployment names and masked parameters."""
    runs: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        for chunk in _chunks(flow_run_ids, PAGE):
            runs += client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=PAGE)
        return _records(client, runs)


@task
def read_failed_task_runs(flow_run_ids: Sequence[UUID | str]) -> dict[str, list[TaskRunRecord]]:
    """Task runs of the runs that ended Failed or Crashed, retries used up, oldest first, by run id."""
    task_runs: list[Any] = []
    with get_client(sync_client=True) as client:
        for chunk in _chunks(flow_run_ids, RUNS_PER_TASK_RUN_READ):
            task_runs += client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(
                    type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=MAX_FAILED_TASK_RUNS,
            )
    by_run: dict[str, list[TaskRunRecord]] = {}
    for t in task_runs:
        by_run.setdefault(str(t.flow_run_id), []).append(TaskRunRecord(
            id=str(t.id), task_name=t.task_key.rsplit("-", 1)[0], name=t.name,
            state_message=t.state.message or "" if t.state else "",
            attempts=max(1, t.run_count), max_attempts=(t.empirical_policy.retries or 0) + 1,
        ))
    return by_run


@task
def read_log_records(flow_run_id: UUID | str, last: int) -> list[LogRecord]:
    """The run's last `last` log records, plus its ERROR records (where tracebacks are)."""
    with get_client(sync_client=True) as client:
        of_run = LogFilterFlowRunId(any_=[UUID(str(flow_run_id))])
        tail = client.read_logs(LogFilter(flow_run_id=of_run), limit=last, sort=LogSort.TIMESTAMP_DESC) if last else []
        errors = client.read_logs(LogFilter(flow_run_id=of_run, level=LogFilterLevel(ge_=ERROR)),
                                  limit=MAX_ERROR_RECORDS, sort=LogSort.TIMESTAMP_DESC)
    by_id = {log.id: log for log in [*tail, *errors]}
    return [
        LogRecord(timestamp=log.timestamp, level=log.level, message=log.message,
                  task_run_id=str(log.task_run_id) if log.task_run_id else None)
        for log in by_id.values()
    ]


@task
def announced_runs(flow_run_ids: Sequence[UUID | str], events: Sequence[str]) -> set[str]:
    """The runs among `flow_run_ids` that one of `events` already announced (a failure hook, an
    earlier report, a grouped message)."""
    found: set[str] = set()
    with get_client(sync_client=True) as client:
        for chunk in _chunks(flow_run_ids, PAGE):
            page = client.read_events(EventFilter(
                occurred=EventOccurredFilter(since=datetime.now(timezone.utc) - timedelta(days=ANNOUNCEMENT_DAYS)),
                event=EventNameFilter(name=list(events)),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{i}" for i in chunk]),
            ), limit=EVENTS_PAGE)
            found |= {e.resource.id.removeprefix("prefect.flow-run.") for e in page.events}
            while page.next_page:
                page = client.read_events_page(page.next_page)
                found |= {e.resource.id.removeprefix("prefect.flow-run.") for e in page.events}
    return found


def _waiting_reports(client: SyncPrefectClient, lookback: timedelta) -> list[FlowRun]:
    """This deployment's other report runs that are due and waiting: not picked up yet, or
    waiting for the running report to end (`AwaitingConcurrencySlot`, same expected start)."""
    now = datetime.now(timezone.utc)
    found: list[FlowRun] = []
    while len(found) < MAX_REPORTS_GATHERED:
        page = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[UUID(runtime_deployment.id)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=now - lookback, before_=now),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=PAGE, offset=len(found),
        )
        found += page
        if len(page) < PAGE:
            break
    return [r for r in found if str(r.id) != str(runtime_flow_run.id)]


@task
def previous_report_end() -> datetime | None:
    """When the last other run of this report deployment ended (its events may still be on the way)."""
    if not runtime_deployment.id:
        return None
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(runtime_deployment.id)])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]))),
            sort=FlowRunSort.END_TIME_DESC, limit=2)
    ends = [r.end_time for r in runs if str(r.id) != str(runtime_flow_run.id) and r.end_time]
    return max(ends, default=None)


@task
def cancel_reports(report_run_ids: Sequence[str], message: str) -> None:
    """Cancel report runs that are still waiting: the runs they are about were just announced."""
    with get_client(sync_client=True) as client:
        for report_run_id in report_run_ids:
            run = client.read_flow_run(UUID(report_run_id))
            if run.state and run.state.type == StateType.SCHEDULED:
                try:
                    client.set_flow_run_state(run.id, Cancelled(message=message))
                except PrefectHTTPStatusError:
                    pass  # it started meanwhile: it will find its run announced


@task
def read_running_runs() -> list[RunRecord]:
    """Runs of deployments that are running now."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            deployment_id=FlowRunFilterDeploymentId(is_null_=False),
        ), limit=MAX_RUNS)
        return _records(client, runs)


@task
def read_durations(deployment_ids: Sequence[str], last: int) -> dict[str, list[float]]:
    """Seconds taken by each deployment's `last` most recent completed runs."""
    durations: dict[str, list[float]] = {}
    with get_client(sync_client=True) as client:
        for deployment_id in dict.fromkeys(deployment_ids):
            runs: list[Any] = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment_id)])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))),
                sort=FlowRunSort.END_TIME_DESC, limit=last)
            durations[deployment_id] = [(r.end_time - r.start_time).total_seconds()
                                        for r in runs if r.start_time and r.end_time]
    return durations


@task
def gather_reports_due(window_seconds: float, max_seconds: float, lookback_minutes: float) -> list[tuple[str, str]]:
    """(report run, the run it is about) of the report runs waiting (`_waiting_reports`),
    gathered until no new one came for `window_seconds` (at most `max_seconds`): in a storm,
    failures keep coming for a while, and this report announces them together."""
    if not runtime_deployment.id:
        return []
    deadline = time.monotonic() + max_seconds
    due: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        while True:
            time.sleep(max(0.0, min(window_seconds, deadline - time.monotonic())))
            new = {str(r.id): str(r.parameters["flow_run_id"])
                   for r in _waiting_reports(client, timedelta(minutes=lookback_minutes))
                   if r.parameters.get("flow_run_id") and str(r.id) not in due}
            due |= new
            if not new or time.monotonic() >= deadline:
                return list(due.items())
