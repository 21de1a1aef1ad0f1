"""End to end on a real Prefect server: flow -> event -> automation -> GoogleChatWebhook -> receiver.

The messages are sent by the server's automations (the flows only emit events), exactly as
in production on a self-hosted server.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from prefect import flow, get_run_logger
from prefect.blocks.abstract import NotificationError
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.logging.handlers import APILogHandler

from blocks.google_chat import GoogleChatWebhook
from deployments.automations import apply_automations, build_automations
from rules.config import ConfigError
from rules.findings import Finding
from tasks.report import write_report
from tests.sample_jobs import PlantedPolicy, failing_job, findings_job
from tests.server_search import server_haystack, store_haystack


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


def test_a_finding_gone_after_the_policy_changed_is_no_longer_reported_not_resolved(routed, store):
    name = store._block_document_name
    findings_job(["vol-1", "vol-2"], name, policy=PlantedPolicy(min_cost_usd=1))
    routed.wait_for(1)
    findings_job(["vol-2"], name, policy=PlantedPolicy(min_cost_usd=5))  # the threshold was raised
    second = routed.wait_for(2)[1]
    assert "1 no longer reported" in second.text and "resolved" not in second.text
    assert "under a threshold the policy changed (min_cost_usd: 1.0 -> 5.0)" in second.text
    findings_job([], name, policy=PlantedPolicy(min_cost_usd=5))  # same policy: really healed
    assert "1 resolved" in routed.wait_for(3)[2].text


def test_escalation_is_announced(routed, store):
    name = store._block_document_name
    findings_job(["db-1"], name, "warning")
    findings_job(["db-1"], name, "critical")
    messages = routed.wait_for(2)
    assert "1 escalated" in messages[1].text and "[critical]" in messages[1].text


def test_webhook_secret_never_reaches_logs_events_artifacts_or_store(routed, store):
    name = store._block_document_name
    started = datetime.now(timezone.utc)
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
            APILogHandler().flush()  # sent now, not in a later batch a busy machine may delay

    routed.wait_for(2)  # the automations' two messages first, or one of them gets the 503
    routed.settle(quiet=3)  # and anything else still on its way (late events of earlier runs)
    routed.respond_with(503)
    notify_fails(routed.block_name)
    routed.settle(quiet=2)

    deadline = time.monotonic() + 90  # logs reach the server in batches (slower on a busy machine)
    while True:
        blob = _everything_stored(routed, store, started)
        if ("chat down" in blob and "vol-9" in blob) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "chat down" in blob and "vol-9" in blob  # the search did see the runs
    assert "local-key" not in blob and "local-token" not in blob


def _everything_stored(routed, store, since: datetime) -> str:
    """Chat messages, what the Prefect server holds of this test's runs, and the store's rows."""
    haystack = [m.raw.decode() for m in routed.received]
    return "\n".join(haystack + server_haystack(since) + store_haystack(store.engine))


def test_missing_chat_block_is_a_clear_error_before_anything_is_created():
    with pytest.raises(ConfigError, match="'no-such-chat' \\(parameter `--chat-block`\\) does not exist"):
        build_automations(chat_block="no-such-chat")


def test_automations_apply_idempotently(chat):
    GoogleChatWebhook(url=chat.url).save("idempotent-chat", overwrite=True)
    first = apply_automations(chat_block="idempotent-chat")
    second = apply_automations(chat_block="idempotent-chat")
    assert first == second and len(first) == 3


@flow(name="report-many")
def report_many(count: int) -> None:
    write_report("report-many", [Finding(kind="planted", resource_id=f"r-{i:05d}", reason="x",
                                         monthly_cost_usd=float(i)) for i in range(count)])


def test_a_findings_table_shows_the_costliest_1000_and_says_so():
    report_many(1_001)
    with get_client(sync_client=True) as client:
        table, summary = (client.read_latest_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key])))[0] for key in ("report-many-findings", "report-many-summary"))
    rows = json.loads(table.data)
    assert len(rows) == 1_000 and rows[0]["resource"] == "r-01000" and rows[-1]["resource"] == "r-00001"
    assert "first 1,000 of 1,001 findings" in summary.data
