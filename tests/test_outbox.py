"""Google Chat down: messages wait in the store's outbox and are delivered later, once each."""

from __future__ import annotations

import pytest
from prefect.blocks.abstract import NotificationError

from blocks.google_chat import GoogleChatWebhook
from tests.conftest import route_to
from tests.sample_jobs import findings_job


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
