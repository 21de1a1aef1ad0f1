"""End to end on a real Prefect server: flow -> event -> automation -> GoogleChatWebhook -> receiver.

The messages are sent by the server's automations (the flows only emit events), exactly as
in production on a self-hosted server.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from prefect import flow, get_run_logger
from prefect.blocks.abstract import NotificationError
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.settings import PREFECT_API_URL

from blocks.google_chat import GoogleChatWebhook
from deployments.automations import apply_automations, build_automations
from rules.config import ConfigError
from tests.sample_jobs import failing_job, findings_job


@pytest.fixture
def routed(chat):
    """Automations routing to this test's receiver through a GoogleChatWebhook block."""
    name = f"chat-{uuid.uuid4().hex[:8]}"
    GoogleChatWebhook(url=chat.url, max_backoff_seconds=0.05).save(name)
    apply_automations(chat_block=name)
    chat.block_name = name
    return chat


def test_failed_flow_sends_one_message_with_error_and_last_logs(routed):
    state = failing_job(return_state=True)
    assert state.is_failed()
    [message] = routed.wait_for(1)
    assert routed.settle(quiet=2) == [message]  # exactly one
    text = message.text
    assert "backbone-failing" in text
    assert "upstream table orders_7 is missing" in text
    assert "loading batch 7 of orders" in text  # a log line from the task
    assert "batch=7" in text  # key parameters
    assert "/runs/flow-run/" in text


def test_finding_opens_once_stays_quiet_then_resolves(routed, store):
    name = store._block_document_name
    findings_job(["vol-1", "vol-2"], name)
    [opened] = routed.wait_for(1)
    assert "2 new" in opened.text and "vol-1" in opened.text and "$3.00/mo" in opened.text
    assert opened.message["cardsV2"]

    findings_job(["vol-1", "vol-2"], name)
    assert len(routed.settle(quiet=3)) == 1  # nothing new to say

    findings_job(["vol-2"], name)
    messages = routed.wait_for(2)
    assert len(messages) == 2 and "1 resolved" in messages[1].text and "vol-1" in messages[1].text
    assert "vol-2" not in messages[1].text


def test_escalation_is_announced(routed, store):
    name = store._block_document_name
    findings_job(["db-1"], name, "warning")
    findings_job(["db-1"], name, "critical")
    messages = routed.wait_for(2)
    assert "1 escalated" in messages[1].text and "[critical]" in messages[1].text


def test_webhook_secret_never_reaches_logs_events_artifacts_or_store(routed, store):
    name = store._block_document_name
    failing_job(return_state=True)
    findings_job(["vol-9"], name)

    @flow(name="backbone-notify-fails")
    def notify_fails(block_name: str) -> None:
        block = GoogleChatWebhook.load(block_name)
        block.max_attempts = 1
        try:
            block.notify("direct", subject="[t] direct")
        except NotificationError as exc:
            get_run_logger().error("chat down: %s", exc)

    routed.wait_for(2)  # the automations' two messages first, or one of them gets the 503
    routed.respond_with(503)
    notify_fails(routed.block_name)
    routed.settle(quiet=2)

    deadline = time.monotonic() + 30  # logs reach the server in batches: wait for them
    while True:
        blob = _everything_stored(routed, store)
        if ("chat down" in blob and "vol-9" in blob) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "chat down" in blob and "vol-9" in blob  # the search did see the runs
    assert "local-key" not in blob and "local-token" not in blob


def _everything_stored(routed, store) -> str:
    """Chat messages, the newest runs' logs and states, artifacts, events and store rows."""
    haystack = [m.raw.decode() for m in routed.received]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=10, sort=FlowRunSort.START_TIME_DESC)
        haystack += [log.message for log in client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])), limit=200,
            sort=LogSort.TIMESTAMP_DESC)]
        haystack += [str(a.data) + str(a.description) for a in client.read_artifacts()]
        haystack += [str(r.state.message) for r in runs]
    haystack += _all_events()
    haystack += [str(row) for row in store.findings_of("backbone-findings")]
    return "\n".join(haystack)


def _all_events() -> list[str]:
    """Every event the server stored (the events API pages by 50)."""
    api = PREFECT_API_URL.value()
    pages = []
    response = httpx.post(f"{api}/events/filter", json={"limit": 50}).json()
    while True:
        pages.append(json.dumps(response["events"]))
        if not response.get("next_page"):
            return pages
        response = httpx.get(response["next_page"]).json()


def test_missing_chat_block_is_a_clear_error_before_anything_is_created():
    with pytest.raises(ConfigError, match="'no-such-chat' \\(parameter `--chat-block`\\) does not exist"):
        build_automations(chat_block="no-such-chat")


def test_automations_apply_idempotently(chat):
    GoogleChatWebhook(url=chat.url).save("idempotent-chat", overwrite=True)
    first = apply_automations(chat_block="idempotent-chat")
    second = apply_automations(chat_block="idempotent-chat")
    assert first == second and len(first) == 3
