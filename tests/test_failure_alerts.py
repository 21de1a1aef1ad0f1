"""Failure alerts that are enough to start debugging: real server, automations, chat receiver.

A deployment's run is created on the server and executed in this process with Prefect's own
`run_flow` (what a worker does in its subprocess), so the run carries the deployment and
its tags exactly as in production.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow

from blocks.google_chat import GoogleChatWebhook, chat_message
from deployments.automations import (
    SILENT_PREFIX,
    apply_silent_automations,
    silent_window,
)
from deployments.chat_receiver import ChatReceiver
from deployments.demo import prefect_server, use_server
from rules.config import ConfigError
from rules.messages import TaskFailure, flow_failure_message
from tasks.notify import on_flow_failure


@task(retries=1, retry_delay_seconds=0)
def extract_orders(day: str) -> list[int]:
    get_run_logger().info("reading s3://landing/orders/%s/", day)
    raise FileNotFoundError(f"no objects under landing/orders/{day}/")


@task
def announce() -> None:
    get_run_logger().info("the pipeline started")


@flow(name="orders-pipeline", on_failure=[on_flow_failure])
def orders_pipeline(day: str = "2026-11-24") -> None:
    announce()
    extract_orders(day)


@flow(name="slow-pipeline", on_failure=[on_flow_failure], timeout_seconds=1)
def slow_pipeline() -> None:
    get_run_logger().info("waiting for the export")
    time.sleep(3)


def run_deployment_here(fl, name: str, tags: list[str], parameters: dict):
    """Register a deployment, create its run on the server, execute that run in process."""
    deployment_id = fl.to_deployment(name=name, tags=tags).apply()
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    return run_flow(fl, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")


def test_deployment_run_failing_in_a_task_sends_one_useful_message(routed):
    state = run_deployment_here(orders_pipeline, "nightly", ["dataplatform-ops", "owner:1234567890"],
                                {"day": "2026-11-24"})
    assert state.is_failed()
    [message] = routed.wait_for(1)
    assert routed.settle(quiet=2) == [message]  # one message per failed run
    card = message.message["cardsV2"][0]["card"]
    title, body = card["header"]["title"], card["sections"][0]["widgets"][0]["textParagraph"]["text"]
    assert title.startswith("[orders-pipeline/nightly] run ")
    assert "in task extract_orders: FileNotFoundError: no objects under landing/orders/2026-11-24/" in title
    for expected in [
        "Deployment: nightly",
        "Failed task: extract_orders (extract_orders-",
        "attempt 2 of 2, 0 retries left",                        # the task's retry was used
        "Flow run attempt 1 of 1, 0 retries left",
        "/runs/flow-run/",
        "Traceback (last lines):",
        "raise FileNotFoundError",                               # the traceback tail
        "Last log lines:",
        "reading s3://landing/orders/2026-11-24/",               # a log line of the failed task
        "the pipeline started",                                  # and of the one before
        "day=2026-11-24",
        "@1234567890",
    ]:
        assert expected in body, expected
    assert message.message["text"] == "<users/1234567890>"  # the owner is really mentioned
    today = datetime.now(timezone.utc)
    assert message.message["thread"]["threadKey"] == f"orders-pipeline/nightly-{today:%Y-%m-%d}"


def test_timed_out_run_is_announced(routed):
    state = slow_pipeline(return_state=True)
    assert state.name == "TimedOut"
    [message] = routed.wait_for(1)
    assert "[slow-pipeline] run " in message.text and "TimedOut" in message.text
    assert "exceeded timeout of 1.0 second(s)" in message.text and "waiting for the export" in message.text
    assert "Failed task" not in message.text


def test_failure_message_without_task_or_deployment_keeps_the_old_shape():
    subject, body = flow_failure_message(
        flow_name="f", flow_run_name="r", state_name="Failed", state_message="boom",
        log_lines=["a log line"], parameters={"x": 1})
    assert subject == "[f] run r Failed"
    assert body.startswith("Flow f, run r: Failed") and "boom" in body and "x=1" in body


def test_failure_message_flow_body_exception_and_owners():
    subject, body = flow_failure_message(
        flow_name="f", flow_run_name="r", state_name="Failed", state_message="KeyError: 'id'",
        log_lines=[], parameters={}, deployment="d", owners=["all", "users/42"],
        failure=TaskFailure(None, None, "KeyError: 'id'", ("  File x", "KeyError: 'id'")))
    assert subject == "[f/d] run r Failed: KeyError: 'id'"
    assert body.startswith("<users/all> <users/42> Flow f") and "Failed task" not in body
    assert "Traceback (last lines):\n  File x\nKeyError: 'id'" in body


def test_chat_message_mentions_go_to_text_and_plain_text_keeps_them():
    card = chat_message("<users/42> Flow f failed", "[f] x")
    assert card["text"] == "<users/42>"
    assert "@42 Flow f failed" in card["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
    assert chat_message("<users/42> Flow f failed", "[f] x", cards=False)["text"] == "*[f] x*\n<users/42> Flow f failed"
    assert "text" not in chat_message("no one to mention", "[f] x")


@flow(name="hourly-export", on_failure=[on_flow_failure])
def hourly_export() -> None:
    get_run_logger().info("exported")


def test_silent_deployment_gets_a_proactive_automation(chat):
    """The automation as stored; that it fires is the next test's (the harness cannot)."""
    GoogleChatWebhook(url=chat.url).save("silent-chat", overwrite=True)
    deployment_id = hourly_export.to_deployment(
        name="hourly", tags=["silent-after:2h", "owner:all"]).apply()
    apply_silent_automations(chat_block="silent-chat")
    [ids] = [apply_silent_automations(chat_block="silent-chat")]  # idempotent
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(SILENT_PREFIX + "hourly-export/hourly")
        assert automation.id in ids
        trigger = automation.trigger
        assert trigger.posture == "Proactive" and trigger.within == timedelta(hours=2)
        assert trigger.expect == {"prefect.flow-run.Completed"}
        assert trigger.match_related.model_dump() == {"prefect.resource.id": f"prefect.deployment.{deployment_id}"}
        assert automation.actions[0].subject == "[hourly-export/hourly] silent: no completed run in 2h"
        assert automation.actions[0].body.startswith("<users/all> No run of deployment hourly-export/hourly")

    hourly_export.to_deployment(name="hourly", tags=[]).apply()  # tag removed -> automation removed
    apply_silent_automations(chat_block="silent-chat")
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(SILENT_PREFIX + "hourly-export/hourly") == []


@flow(name="quiet-export")
def quiet_export() -> None:
    get_run_logger().info("never runs")


@pytest.mark.slow
def test_silent_deployment_alert_fires_on_a_real_server_and_a_run_holds_it_off(tmp_path):
    """Proactive triggers need the server's triggers service, which the test harness lacks: a
    real `prefect server start` (the demo's) runs here. Two deployments, silent after 1 minute;
    one completes a run at once. About a minute later exactly one message: the idle one's."""
    with prefect_server(tmp_path) as server:
        server.wait_healthy()
        with use_server(server), ChatReceiver() as chat:
            GoogleChatWebhook(url=chat.url).save("silent-chat", overwrite=True)
            quiet_export.to_deployment(name="idle", tags=["silent-after:1m"]).apply()
            busy = hourly_export.to_deployment(name="busy", tags=["silent-after:1m"]).apply()
            apply_silent_automations(chat_block="silent-chat")
            with get_client(sync_client=True) as client:
                flow_run = client.create_flow_run_from_deployment(busy)
            assert run_flow(hourly_export, flow_run=flow_run, return_type="state").is_completed()

            [message] = chat.wait_for(1, timeout=120)
            assert chat.settle(quiet=5) == [message]
    assert "[quiet-export/idle] silent: no completed run in 1m" in message.text
    assert "hourly-export/busy" not in message.text


@pytest.mark.parametrize(("tags", "expected"), [
    (["x"], None), (["silent-after:90m"], (timedelta(minutes=90), "90m")),
    (["silent-after:2d"], (timedelta(days=2), "2d")),
])
def test_silent_window(tags, expected):
    assert silent_window(tags) == expected


def test_silent_window_bad_tag_is_a_clear_error():
    with pytest.raises(ConfigError, match="silent-after:6h"):
        silent_window(["silent-after:6 hours"])
