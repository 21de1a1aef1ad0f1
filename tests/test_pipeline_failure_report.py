"""Zero-code failure reports, end to end: third-party flows run by a real runner (subprocesses),
the server's automations start the report deployment, and its message reaches the chat receiver.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.exceptions import ObjectNotFound
from prefect.flow_engine import run_flow
from prefect.runner import Runner
from prefect.states import Crashed, Failed, Late, Running, Scheduled

from deployments.automations import (
    PIPELINE_PREFIX,
    REPORT_DEPLOYMENT,
    apply_pipeline_failure_automations,
    main,
)
from deployments.chat_receiver import readable
from flows.pipeline_failure_report import JOB, pipeline_failure_report
from rules.pipeline_failures import (
    LogRecord,
    ReportPolicy,
    RunRecord,
    TaskRunRecord,
    duration_text,
    log_lines,
    percentile,
    plan_reports,
    seconds_to_settle,
    seconds_to_wait,
    skip_reason,
    slow_runs,
    storm_reports,
    task_failure,
)
from tests import third_party_pipelines as third_party

pytestmark = pytest.mark.slow

# Short windows keep the module fast; the hook grace stays at its default (the hooked test needs it).
POLICY = {"storm_window_seconds": 3, "storm_max_seconds": 60, "storm_runs_per_message": 25,
          "slow_min_history": 5, "slow_min_seconds": 0}


@pytest.fixture(scope="module")
def runner() -> Iterator[dict[str, UUID]]:
    """A runner in a background thread, polling every second, serving the report deployment
    and the third-party deployments; yields deployment name -> id."""
    with get_client(sync_client=True) as client:  # tests/test_deploy.py registers this name from prefect.yaml
        try:  # with a pull step: served here it must be the in-process flow instead
            client.delete_deployment(client.read_deployment_by_name(f"{JOB}/{JOB}").id)
        except ObjectNotFound:
            pass
    runner = Runner(name="pipeline-failures-test", query_seconds=1, pause_on_shutdown=False, limit=None)
    deployments = [
        pipeline_failure_report.to_deployment(  # as prefect.yaml has it: one report at a time
            name=JOB, tags=["dataplatform-ops", "pipeline-watch"], parameters={"policy": POLICY},
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="ENQUEUE")),
        third_party.crm_sync.to_deployment(name="nightly", tags=["team:crm", "owner:555"]),
        third_party.crm_export.to_deployment(name="export", tags=["team:crm"]),
        third_party.crm_hooked.to_deployment(name="hooked", tags=["team:crm"]),
        third_party.crm_best_effort.to_deployment(name="best-effort", tags=["team:crm", "report-task-failures"]),
    ]
    loop = asyncio.new_event_loop()
    ids: dict[str, UUID] = {}

    async def serve() -> None:
        for deployment in deployments:
            ids[deployment.name] = await runner.aadd_deployment(deployment)
        await runner.start()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while len(ids) < len(deployments) and time.monotonic() < deadline:
        time.sleep(0.2)
    yield ids
    asyncio.run_coroutine_threadsafe(runner.astop(), loop).result(timeout=60)
    thread.join(timeout=60)
    with get_client(sync_client=True) as client:  # later modules' failures must not start reports
        for automation in client.read_automations():
            if automation.name.startswith(PIPELINE_PREFIX):
                client.delete_automation(automation.id)


@pytest.fixture
def reported(routed, runner):
    """The chat receiver with the usual automations, plus the pipeline-failure ones."""
    apply_pipeline_failure_automations(exclude_deployments=["never-*"], late_after=timedelta(seconds=1))
    time.sleep(1)  # the server's automation cache refreshes after the commit (see conftest)
    return routed


def run_and_wait(deployment_id: UUID, parameters: dict | None = None, timeout: float = 90):
    """Start a run of a served deployment; the run once final."""
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(not r.state.is_final() for r in client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))):
            time.sleep(0.5)  # one report at a time: one started now would wait, or be gathered
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        while time.monotonic() < deadline:
            flow_run = client.read_flow_run(flow_run.id)
            if flow_run.state.is_final():
                return flow_run
            time.sleep(0.5)
    raise AssertionError(f"run {flow_run.name} still {flow_run.state.name} after {timeout} s")


def one_message(chat) -> tuple[object, str, str]:
    """The one message that arrives (no other follows); its title and text as a person sees them."""
    [message] = chat.wait_for(1, timeout=90)
    assert chat.settle(quiet=3) == [message]
    return message, *readable(message.message)


def reports_done(ids: dict[str, UUID], timeout: float = 180) -> None:
    """Wait until every report run is final."""
    deadline = time.monotonic() + timeout
    while any(not r.state.is_final() for r in report_runs(ids)) and time.monotonic() < deadline:
        time.sleep(1)


def report_runs(ids: dict[str, UUID]) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[ids[JOB]])))


def test_third_party_task_failure_is_reported_once_with_its_logs(reported, runner):
    failed = run_and_wait(runner["nightly"], {"day": "2026-11-24", "api_token": "tok-planted"})
    assert failed.state.is_failed()
    message, subject, text = one_message(reported)
    assert subject == (f"[crm-sync/nightly] run {failed.name} Failed in task load_customers: "
                       "ConnectionError: warehouse refused the connection: too many clients")
    for expected in [
        "Deployment: nightly",
        "Failed task: load_customers (load_customers-",
        "attempt 2 of 2, 0 retries left",                            # the task's retry was used
        "Traceback (last lines):",
        'raise ConnectionError("warehouse refused the connection: too many clients")',
        "Last log lines:",
        "crm sync started",                                          # the flow's log line
        "copying customers for 2026-11-24 into the warehouse",       # and the task's
        "day=2026-11-24", "api_token=***",                           # secret-looking: masked
        f"/runs/flow-run/{failed.id}",
        "@555",
    ]:
        assert expected in text, expected
    assert "tok-planted" not in message.text
    assert message.message["text"] == "<users/555>"
    assert message.message["thread"]["threadKey"] == f"crm-sync/nightly-{datetime.now(timezone.utc):%Y-%m-%d}"

    # The report again, as a second automation firing would start it: nothing more is sent.
    assert run_and_wait(runner[JOB], {"flow_run_id": str(failed.id)}).state.is_completed()
    assert reported.settle(quiet=2) == [message]


def test_crashed_run_is_reported_with_the_lines_before_the_crash(reported, runner):
    crashed = run_and_wait(runner["export"])
    assert crashed.state.is_crashed()
    _, subject, text = one_message(reported)
    assert subject == f"[crm-export/export] run {crashed.name} Crashed"
    assert "exported 1200 of 5000 rows" in text
    assert crashed.state.message in text                         # the runner's account of the exit
    assert "Failed task" not in text


def test_run_announced_by_its_own_hook_is_not_reported_again(reported, runner):
    before = len(report_runs(runner))
    failed = run_and_wait(runner["hooked"])
    assert failed.state.is_failed()
    [message] = reported.wait_for(1, timeout=90)
    # The report ran (and chose silence): wait for it, then for anything late.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = report_runs(runner)
        if len(runs) > before and all(r.state.is_final() for r in runs):
            break
        time.sleep(0.5)
    assert len(runs) == before + 1 and all(r.state.is_completed() for r in runs)
    assert reported.settle(quiet=3) == [message]
    assert "ValueError: bad row 17" in message.text
    with get_client(sync_client=True) as client:
        said = [log.message for run in runs for log in client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))]
    assert f"No report for run {failed.name}: already announced (the flow's own failure hook" in "\n".join(said)


def test_task_failure_in_a_completed_run_is_reported_when_opted_in(reported, runner):
    completed = run_and_wait(runner["best-effort"])
    assert completed.state.is_completed()
    _, subject, text = one_message(reported)
    assert subject == f"[crm-best-effort/best-effort] run {completed.name} completed with 1 failed task"
    assert "• refresh_thumbnails (refresh_thumbnails-" in text
    assert "attempt 2 of 2: TimeoutError: image service did not answer" in text
    assert "refreshing thumbnails" in text


def test_run_still_late_is_reported_once(reported, runner):
    """The server's late-runs service (not run by the test harness) marks a run Late; the test
    proposes that same state for a run no one serves. A second later the report finds it still late."""
    unserved = third_party.crm_export.to_deployment(name="unserved", tags=["team:crm", "owner:555"]).apply()
    scheduled_for = datetime.now(timezone.utc) - timedelta(minutes=30)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(unserved, state=Scheduled(scheduled_time=scheduled_for))
        client.set_flow_run_state(flow_run.id, Late(scheduled_time=scheduled_for), force=True)
    message, subject, text = one_message(reported)
    # The report counts the minutes when it runs: more than 30 on a busy machine.
    late_for = (datetime.now(timezone.utc) - scheduled_for) // timedelta(minutes=1)
    prefix = f"[crm-export/unserved] run {flow_run.name} Late: not started "
    assert subject.startswith(prefix) and subject.endswith(" min after its scheduled time"), subject
    assert 30 <= int(subject.removeprefix(prefix).split()[0]) <= late_for, subject
    assert f"scheduled for {scheduled_for:%Y-%m-%d %H:%M} UTC" in text and "no worker polls" in text
    assert message.message["text"] == "<users/555>"


def test_storm_of_failures_is_grouped_every_run_named_once_none_lost(reported, runner):
    """50 runs of 5 pipelines fail within a few seconds (a warehouse outage). Their processes are
    not what is under test here (the tests above run real ones): the test proposes the Failed and
    Crashed states, as a worker would, and the server emits the same events. The first report
    takes over the runs of the reports waiting for it; Google Chat answers 429 three times."""
    pipelines = [third_party.crm_export.to_deployment(name=f"dw-load-{p}", tags=["team:dw", "owner:777"]).apply()
                 for p in range(5)]
    names = [f"storm-{i:02d}" for i in range(50)]
    reported.respond_with(429, 429, 429)
    with get_client(sync_client=True) as client:
        runs = [client.create_flow_run_from_deployment(pipelines[i % 5], name=name) for i, name in enumerate(names)]
        for i, run in enumerate(runs):
            client.set_flow_run_state(run.id, Running(), force=True)
            outage = "OperationalError: could not connect to the warehouse: connection refused"
            client.set_flow_run_state(run.id, Crashed(message="process killed") if i % 10 == 9
                                      else Failed(message=outage), force=True)
    reported.wait_for(2, timeout=120)
    reports_done(runner)  # a report for a straggler waits its turn (about 30 s), then runs
    deadline = time.monotonic() + 60  # its messages follow through the automation
    while time.monotonic() < deadline and not all(name in " ".join(m.text for m in reported.delivered)
                                                  for name in names):
        time.sleep(1)
    delivered = reported.settle(quiet=3)  # and nothing more: no run twice
    texts = [" ".join(readable(m.message)) for m in delivered]
    subjects = [readable(m.message)[0] for m in delivered]
    for name in names:
        assert sum(f" {name}:" in t or f" {name} " in t for t in texts) == 1, (name, subjects)  # named once
    assert 2 <= len(delivered) <= 6, [readable(m.message)[0] for m in delivered]
    grouped = [t for t in texts if t.startswith("[pipeline-failures] ")]
    assert grouped and "runs failed at once" in grouped[0] and "could not connect to the warehouse" in grouped[0]
    assert "dw-load-" in grouped[0] and "<users/777>" in delivered[texts.index(grouped[0])].text
    refused = [r for r in reported.received if r.status == 429]
    assert len(refused) == 3  # each was sent again and went through
    assert all(any(d.raw == r.raw for d in delivered) for r in refused)
    ran = [r for r in report_runs(runner) if r.run_count and r.expected_start_time > runs[0].created]
    assert len(ran) <= 3  # a report process or two, not 50: the others were taken over and cancelled


def test_slow_run_is_reported_once(reported, runner):
    """Five quick runs of a deployment (in this process), then one held running; the scheduled
    sweep (run here: the test server runs no schedules) finds it slow, once."""
    deployment_id = third_party.warehouse_load.to_deployment(name="hourly", tags=["team:dw", "owner:777"]).apply()
    with get_client(sync_client=True) as client:
        for _ in range(5):
            run = client.create_flow_run_from_deployment(deployment_id)
            assert run_flow(third_party.warehouse_load, flow_run=run, return_type="state").is_completed()
        held = client.create_flow_run_from_deployment(deployment_id, parameters={"hold": True})
    third_party.RELEASE_WAREHOUSE_LOAD.clear()
    holder = threading.Thread(target=run_flow, args=(third_party.warehouse_load,),
                              kwargs={"flow_run": held, "parameters": {"hold": True}}, daemon=True)
    holder.start()
    try:
        assert run_and_wait(runner[JOB], {}).state.is_completed()
        message, subject, text = one_message(reported)
        assert subject.startswith(f"[warehouse-load/hourly] run {held.name} slow: running for "), subject
        assert "The last 5 completed runs of this deployment took at most" in text and "Deployment: hourly" in text
        assert f"/runs/flow-run/{held.id}" in text and message.message["text"] == "<users/777>"
        assert run_and_wait(runner[JOB], {}).state.is_completed()  # the next sweep: still slow, said once
        assert reported.settle(quiet=3) == [message]
    finally:
        third_party.RELEASE_WAREHOUSE_LOAD.set()
        holder.join(timeout=60)


def test_pipeline_failure_automations_are_idempotent_and_never_watch_the_report(routed, runner):
    first = apply_pipeline_failure_automations(include_tags=["team:crm"])
    main(["--chat-block", routed.block_name, "--pipeline-failures", "--include-tag", "team:crm",
          "--exclude-tag", "noisy", "--exclude-deployment", "scratch-*", "--late-after-minutes", "5"])
    with get_client(sync_client=True) as client:
        assert {a.id for a in client.read_automations() if a.name.startswith(PIPELINE_PREFIX)} == set(first)
        [failures] = client.read_automations_by_name(PIPELINE_PREFIX + "failures")
        [task_failures] = client.read_automations_by_name(PIPELINE_PREFIX + "task failures")
        [late] = client.read_automations_by_name(PIPELINE_PREFIX + "late runs")
        report_id = client.read_deployment_by_name(REPORT_DEPLOYMENT).id
    assert failures.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed",
                                       "prefect.flow-run.TimedOut"}
    related = [spec.model_dump() for spec in failures.trigger.match_related]
    assert {"prefect.resource.role": "flow", "prefect.resource.name": f"!{JOB}"} in related
    assert {"prefect.resource.role": "deployment", "prefect.resource.name": "!scratch-*"} in related
    assert {"prefect.resource.role": "tag", "prefect.resource.id": ["prefect.tag.team:crm"]} in related
    [action] = failures.actions
    assert action.deployment_id == report_id
    assert action.parameters == {"flow_run_id": "{{ flow_run.id|string }}",
                                 "exclude_tags": ["noisy"]}
    assert late.trigger.expect == {"prefect.flow-run.Late"}
    assert late.actions[0].schedule_after == timedelta(minutes=5)
    assert task_failures.trigger.expect == {"prefect.flow-run.Completed"}
    assert {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.report-task-failures"} in [
        spec.model_dump() for spec in task_failures.trigger.match_related]


def test_log_lines_keep_order_and_cut_tracebacks():
    t = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    records = [
        LogRecord(t.replace(second=2), 40, "Task failed\nTraceback (most recent call last):\n"
                  + "\n".join(f"  frame {i}" for i in range(20)) + "\nKeyError: 'id'", "task-1"),
        LogRecord(t.replace(second=1), 20, "started"),
        LogRecord(t, 20, "too old to show"),
    ]
    lines = log_lines(records, 2)
    assert lines[0] == "06:00:01 INFO started" and lines[1] == "06:00:02 ERROR Task failed"
    assert lines[-1] == "  KeyError: 'id'" and len(lines) == 2 + 8
    failure = task_failure(TaskRunRecord("task-1", "load", "load-abc", "Task run failed", 3, 3), records)
    assert failure.exception == "KeyError: 'id'" and failure.traceback_tail[-1] == "KeyError: 'id'"
    no_logs = task_failure(TaskRunRecord("task-2", "load", "load-def", "Task run failed", 1, 1), records)
    assert (no_logs.exception, no_logs.traceback_tail) == ("Task run failed", ())


def run_record(state_type: str, state_name: str, tags: tuple[str, ...] = (), ended=None) -> RunRecord:
    return RunRecord(id="r", name="brisk-otter", flow_id="f", flow_name="etl", deployment="nightly",
                     state_type=state_type, state_name=state_name, state_message="", tags=tags, ended=ended)


def test_report_waits_for_a_hook_only_where_one_runs():
    ended = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    policy = ReportPolicy(announce_grace_seconds=10)
    failed = run_record("FAILED", "Failed", ended=ended)
    assert seconds_to_wait(failed, ended.replace(second=4), policy) == 6
    assert seconds_to_wait(failed, ended.replace(minute=5), policy) == 0
    assert seconds_to_wait(run_record("CRASHED", "Crashed", ended=ended), ended, policy) == 0


@pytest.mark.parametrize(("run", "announced", "reason"), [
    (run_record("FAILED", "Failed"), False, None),
    (run_record("FAILED", "TimedOut"), True, "already announced"),
    (run_record("CRASHED", "Crashed", ("dataplatform-ops",)), False, "a job of this collection"),
    (run_record("SCHEDULED", "Late", ("dataplatform-ops",)), False, None),  # nothing else tells it
    (run_record("FAILED", "Failed", ("noisy", "x")), False, "tagged noisy"),
    (run_record("COMPLETED", "Completed"), False, "completed without failed tasks"),
    (run_record("RUNNING", "Running"), False, "Running: nothing to report"),
])
def test_skip_reason(run, announced, reason):
    got = skip_reason(run, [], ["noisy"], announced)
    assert got == reason if reason is None else got.startswith(reason)


def test_durations_read_as_people_say_them():
    assert [duration_text(s) for s in (45, 600, 9000)] == ["45 s", "10 min", "2.5 h"]
    assert duration_text(600, "ko") == "10분"


def test_percentile_is_a_duration_some_run_took():
    assert percentile([5, 1, 3, 2, 4], 95) == 5 and percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95 and percentile([7], 95) == 7


def running(name: str, started_seconds_ago: float, deployment_id: str = "d1", tags=()) -> RunRecord:
    now = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    return RunRecord(id=name, name=name, flow_id="f", flow_name="etl", deployment="nightly", state_type="RUNNING",
                     state_name="Running", state_message="", tags=tags,
                     started=now - timedelta(seconds=started_seconds_ago), deployment_id=deployment_id)


def test_slow_runs_need_history_and_go_past_the_usual_times_the_factor():
    now = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    policy = ReportPolicy(slow_factor=3, slow_percentile=95, slow_min_history=10, slow_min_seconds=300)
    history = {"d1": [100.0] * 18 + [200.0] * 2, "short": [100.0] * 9, "quick": [10.0] * 20}
    found = slow_runs([
        running("past", 601), running("within", 599), running("no-history", 10_000, "short"),
        running("quick-but-young", 200, "quick"),  # 3 x 10 s is passed, but not 300 s
        running("quick-and-old", 301, "quick"), running("excluded", 10_000, tags=("noisy",)),
    ], history, now, policy, exclude_tags=["noisy"])
    assert [(s.run.name, s.usual, s.threshold, s.history) for s in found] == [
        ("past", 200.0, 600.0, 20), ("quick-and-old", 10.0, 300.0, 20)]


def test_seconds_to_settle_waits_for_the_previous_reports_events_too():
    ended = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    policy = ReportPolicy(announce_grace_seconds=10)
    crashed = run_record("CRASHED", "Crashed", ended=ended)
    assert seconds_to_settle([crashed], None, ended, policy) == 0
    assert seconds_to_settle([crashed], ended, ended.replace(second=3), policy) == 7
    assert seconds_to_settle([run_record("FAILED", "Failed", ended=ended)], None, ended.replace(second=1), policy) == 9


def failed(i: int, state: str = "FAILED", tags=()) -> RunRecord:
    ended = datetime(2026, 11, 24, 6, 0, i % 60, tzinfo=timezone.utc)
    return RunRecord(id=f"r{i}", name=f"run-{i:02d}", flow_id="f", flow_name="etl", deployment=f"d{i % 3}",
                     state_type=state, state_name=state.title(), state_message="OperationalError: refused\nmore",
                     tags=tags, owners=[str(i % 2)], ended=ended)


def test_plan_groups_a_storm_and_keeps_other_kinds_and_skips_apart():
    policy = ReportPolicy(storm_threshold=5)
    few = plan_reports([failed(i) for i in range(4)], {}, set(), (), policy)
    assert len(few.individual) == 4 and few.grouped == []
    late = run_record("SCHEDULED", "Late")
    many = plan_reports([*(failed(i) for i in range(6)), failed(6, "CRASHED"), failed(1), late,
                         failed(7, tags=("noisy",))], {}, {"r0"}, ["noisy"], policy)
    assert [r.id for r in many.grouped] == ["r1", "r2", "r3", "r4", "r5", "r6"]  # r1 once
    assert many.individual == [late]
    assert many.skipped["r0"].startswith("already announced") and many.skipped["r7"] == "tagged noisy"


def test_storm_messages_name_every_run_once_in_parts():
    runs = [failed(i) for i in range(7)]
    messages = storm_reports(runs, {r.id: f"http://ui/{r.id}" for r in runs}, 3)
    assert [s for s, _ in messages] == [
        f"[pipeline-failures] 7 runs failed at once, 06:00:00–06:00:06 UTC (part {p} of 3)" for p in (1, 2, 3)]
    bodies = "\n".join(body for _, body in messages)
    for r in runs:
        assert bodies.count(f"• etl/{r.deployment} — {r.name}: Failed: OperationalError: refused http://ui/{r.id}") == 1
    first = messages[0][1]
    assert first.startswith("<users/0> <users/1> 7 runs of 3 pipelines failed between 06:00:00 and 06:00:06 UTC")
    assert "Runs 1 to 3 of 7:" in first and "Runs 7 to 7 of 7:" in messages[2][1]
    assert storm_reports(runs, {}, 40)[0][0] == "[pipeline-failures] 7 runs failed at once, 06:00:00–06:00:06 UTC"
