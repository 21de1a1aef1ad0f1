"""Google Chat down: messages wait in the store's outbox and are delivered later, once each."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from prefect.blocks.abstract import NotificationError

from blocks.google_chat import GoogleChatWebhook
from tasks.notify import EVENT_CHAT_REFUSED
from tests.conftest import route_to
from tests.sample_jobs import findings_job
from tests.server_search import all_events


def test_block_keeps_undelivered_messages_and_sends_them_first_once(chat, store):
    block = GoogleChatWebhook(url=chat.url, max_attempts=2, max_backoff_seconds=0.01,
                              min_interval_seconds=0, outbox=store)
    chat.respond_with(503, 503)
    with pytest.raises(NotificationError):
        block.notify("first", subject="[t] one")
    assert store.pending_message_count() == 1

    chat.respond_with(503, 503)  # still down at the next send: the new one is not tried
    with pytest.raises(NotificationError, match="waits behind"):  # before the one waiting
        block.notify("second", subject="[t] two")
    assert store.pending_message_count() == 2 and len(chat.received) == 4

    block.notify("third", subject="[t] three")
    assert [m.message["fallbackText"].split("\n")[1] for m in chat.delivered] == ["first", "second", "third"]
    assert store.pending_message_count() == 0
    block.notify("fourth", subject="[t] four")
    assert len(chat.delivered) == 4  # nothing sent twice


def test_digest_lost_to_an_outage_arrives_on_the_next_quiet_run(chat, store):
    route_to(chat, max_attempts=2, max_backoff_seconds=0.01, outbox=store)
    store_name = store._block_document_name

    chat.respond_with(503, 503)
    findings_job(["vol-outage"], store_name)
    chat.settle(quiet=3)
    assert chat.delivered == [] and store.pending_message_count() == 1

    findings_job(["vol-outage"], store_name)  # nothing new to say, but the outbox is flushed
    [message] = chat.wait_for(1)
    assert "vol-outage" in message.text and "1 new" in message.text
    assert len(chat.settle(quiet=3)) == 1
    assert store.pending_message_count() == 0


def test_a_digest_chat_refuses_is_announced_again_by_the_next_run(chat, store):
    """The server's automation sends the digest; chat refuses it as a card and as plain text."""
    started = datetime.now(timezone.utc)
    route_to(chat, outbox=store)
    chat.respond_with(400, 400)
    findings_job(["vol-refused"], store._block_document_name)
    chat.settle(quiet=3)
    assert [r.status for r in chat.received] == [400, 400] and chat.delivered == []

    findings_job(["vol-refused"], store._block_document_name)  # not new, but never announced
    [message] = chat.wait_for(1)
    assert "1 still open" in message.text and "vol-refused" in message.text
    assert "refused an earlier message" in message.text and "[backbone-findings] 1 new" in message.text
    findings_job(["vol-refused"], store._block_document_name)
    assert len(chat.settle(quiet=3)) == 1  # announced once it went through: quiet again

    deadline = time.monotonic() + 20  # the chat block on the server emitted it
    while not any(e["event"] == EVENT_CHAT_REFUSED for page in all_events(started - timedelta(minutes=1))
                  for e in json.loads(page)):
        assert time.monotonic() < deadline, "no refusal event"
        time.sleep(0.5)
