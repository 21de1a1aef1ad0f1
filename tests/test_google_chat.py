"""The GoogleChatWebhook block against a local HTTP receiver that enforces Chat's format."""

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from prefect.blocks.abstract import NotificationError

from blocks.google_chat import GoogleChatWebhook, Refused, chat_message
from deployments.chat_receiver import DOWN
from rules.findings import Coverage, Finding, diff_findings
from rules.messages import findings_digest
from tasks.notify import EVENT_CHAT_REFUSED
from tests.server_search import all_events


def block(chat, **kw) -> GoogleChatWebhook:
    return GoogleChatWebhook(url=chat.url, max_backoff_seconds=0.05, min_interval_seconds=0, **kw)


def test_sends_a_card_with_fallback_threaded_per_job_and_day(chat):
    block(chat).notify("3 idle volumes\n<b>not html</b>", subject="[idle-resources] 3 new")
    [got] = chat.delivered
    card = got.message["cardsV2"][0]["card"]
    assert card["header"]["title"] == "[idle-resources] 3 new"
    assert "&lt;b&gt;not html&lt;/b&gt;" in card["sections"][0]["widgets"][0]["textParagraph"]["text"]
    assert "3 idle volumes" in got.message["fallbackText"]
    assert got.message["thread"]["threadKey"].startswith("idle-resources-20")
    assert got.query["messageReplyOption"] == ["REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"]


def test_async_twin_is_used_inside_an_event_loop(chat):
    async def send():
        await block(chat).notify("from a coroutine", subject="[x] y")

    asyncio.run(send())
    assert "from a coroutine" in chat.delivered[0].text


def test_429_twice_then_delivered_once(chat):
    chat.respond_with(429, 429)
    block(chat).notify("hello", subject="[t] retry")
    assert [r.status for r in chat.received] == [429, 429, 200]
    assert len(chat.delivered) == 1


def test_huge_message_is_truncated_under_the_limit_not_refused(chat):
    block(chat).notify("E" * 50_000 + "<&>" * 2000, subject="[t] big")
    [got] = chat.delivered
    assert len(got.raw) <= 32_000
    assert "truncated" in got.text


def test_plain_text_mode_and_final_failure_hides_the_url(chat):
    block(chat, use_cards=False).notify("plain", subject="[t] s")
    assert chat.delivered[0].message["text"] == "*[t] s*\nplain"
    chat.respond_with(503, 503, 503)
    with pytest.raises(NotificationError) as err:
        block(chat, max_attempts=3).notify("x")
    assert "503" in err.value.log
    assert "local-token" not in err.value.log and "local-key" not in err.value.log


def test_client_error_is_not_retried(chat):
    chat.respond_with(404)
    with pytest.raises(NotificationError, match="404"):
        block(chat, max_attempts=5).notify("x")
    assert len(chat.received) == 1


def said(received) -> list[str]:
    """The body lines of delivered messages, cards and plain text alike."""
    return [(m.message.get("fallbackText") or m.message["text"]).split("\n", 1)[1] for m in received]


def test_refused_then_throttled_then_down_then_up_every_message_once_in_order(chat, store):
    outboxed = block(chat, max_attempts=2, outbox=store)
    chat.respond_with(400, 429, DOWN)  # the card refused, its plain text throttled, then down
    with pytest.raises(NotificationError):
        outboxed.notify("one", subject="[t] 1")
    chat.respond_with(DOWN, DOWN)  # still down: "one" is tried again, "two" waits behind it
    with pytest.raises(NotificationError, match="waits behind"):
        outboxed.notify("two", subject="[t] 2")
    assert store.pending_message_count() == 2
    outboxed.notify("three", subject="[t] 3")  # up again
    assert said(chat.delivered) == ["one", "two", "three"]
    assert [r.status for r in chat.received] == [400, 429, DOWN, DOWN, DOWN, 200, 200, 200]
    assert store.pending_message_count() == 0


def test_retry_after_zero_still_waits_a_second_and_messages_keep_chats_pace(chat):
    chat.respond_with(429, 429)
    started = time.monotonic()
    GoogleChatWebhook(url=chat.url, min_interval_seconds=0).notify("x", subject="[t] floor")
    assert time.monotonic() - started >= 2  # two waits of at least the 1 s floor
    paced = GoogleChatWebhook(url=chat.url, min_interval_seconds=0.5)
    started = time.monotonic()
    for n in range(3):
        paced.notify(f"paced {n}", subject="[t] pace")
    assert time.monotonic() - started >= 1.0 and len(chat.delivered) == 4


def test_a_refused_digest_is_kept_surfaced_and_its_findings_are_due_again(chat, store):
    now = datetime.now(timezone.utc)
    found = [Finding(kind="planted", resource_id="vol-1", reason="idle")]
    transitions = diff_findings({}, found, now, timedelta(hours=24), Coverage({""}))
    store.save_transitions("job", transitions, now)
    subject, text = findings_digest("job", transitions)
    store.record_announcement("job", subject, text, transitions, now)
    assert diff_findings(store.open_findings("job"), found, now, timedelta(hours=24), Coverage({""})).is_quiet

    chat.respond_with(400, 400)  # as a card, then as plain text
    with pytest.raises(Refused):
        block(chat, outbox=store).notify(text, subject=subject)
    assert [r.status for r in chat.received] == [400, 400] and "cardsV2" not in chat.received[1].message
    assert store.pending_message_count() == 0  # kept, but never retried
    again = diff_findings(store.open_findings("job"), found, now, timedelta(hours=24), Coverage({""}))
    assert [f.key for f in again.reminded] == [found[0].key]  # the next run announces it again

    block(chat, outbox=store).notify("next", subject="[t] next")
    [next_message] = chat.delivered
    assert "refused an earlier message" in next_message.text and subject in next_message.text
    assert store.unsurfaced_refusals() == []  # said once
    block(chat, outbox=store).notify("after", subject="[t] after")
    assert "refused" not in chat.delivered[1].text

    deadline = time.monotonic() + 20  # events are sent in the background
    while not (refusals := [e for page in all_events(now - timedelta(minutes=1))
                            for e in json.loads(page) if e["event"] == EVENT_CHAT_REFUSED]):
        assert time.monotonic() < deadline, "no refusal event"
        time.sleep(0.5)
    assert refusals[0]["payload"]["subject"] == subject and "HTTP 400" in refusals[0]["payload"]["error"]


def test_message_builder_never_exceeds_limit_even_with_escaping():
    msg = chat_message('"' * 40_000, "[t] quotes")
    assert len(json.dumps(msg).encode()) <= 32_000
