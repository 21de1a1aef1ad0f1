"""Reads a flow run back from the Prefect API for its failure report: the run, its failed task
runs, its logs, and whether it was already announced. Any flow's run: no hook needed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import LogSort, TaskRunSort
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)

from rules.pipeline_failures import ERROR, LogRecord, RunRecord, TaskRunRecord
from tasks.notify import EVENT_FLOW_FAILED, owners_of, safe_parameters

MAX_FAILED_TASK_RUNS = 200
MAX_ERROR_RECORDS = 50


@task
def read_run(flow_run_id: UUID) -> RunRecord:
    """The run as it is now, with its flow and deployment names and masked parameters."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        flow_name = client.read_flow(run.flow_id).name
        deployment = client.read_deployment(run.deployment_id).name if run.deployment_id else None
    return RunRecord(
        id=str(run.id), name=run.name, flow_id=str(run.flow_id), flow_name=flow_name, deployment=deployment,
        state_type=run.state.type.value, state_name=run.state.name,
        state_message=run.state.message or "", tags=list(run.tags),
        parameters=safe_parameters(dict(run.parameters or {})), owners=owners_of(run.tags),
        attempts=max(1, run.run_count), max_attempts=(run.empirical_policy.retries or 0) + 1,
        ended=run.end_time, scheduled=run.expected_start_time,
    )


@task
def read_failed_task_runs(flow_run_id: UUID) -> list[TaskRunRecord]:
    """Task runs of the run that ended Failed or Crashed, retries used up, oldest first."""
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(
                type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=MAX_FAILED_TASK_RUNS,
        )
    return [
        TaskRunRecord(
            id=str(t.id), task_name=t.task_key.rsplit("-", 1)[0], name=t.name,
            state_message=t.state.message or "" if t.state else "",
            attempts=max(1, t.run_count), max_attempts=(t.empirical_policy.retries or 0) + 1,
        )
        for t in task_runs
    ]


@task
def read_log_records(flow_run_id: UUID, last: int) -> list[LogRecord]:
    """The run's last `last` log records, plus its ERROR records (where tracebacks are)."""
    with get_client(sync_client=True) as client:
        of_run = LogFilterFlowRunId(any_=[flow_run_id])
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
def was_announced(flow_run_id: UUID) -> bool:
    """Whether a failure event already announced this run (its flow's hook, or a report)."""
    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(
            occurred=EventOccurredFilter(since=datetime.now(timezone.utc) - timedelta(days=7)),
            event=EventNameFilter(name=[EVENT_FLOW_FAILED]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        ), limit=1)
    return bool(page.events)
