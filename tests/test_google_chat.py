"""The GoogleChatWebhook block against a local HTTP receiver that enforces Chat's format."""

import asyncio
import json

import pytest
from prefect.blocks.abstract import NotificationError

from blocks.google_chat import GoogleChatWebhook, chat_message


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


def test_message_builder_never_exceeds_limit_even_with_escaping():
    msg = chat_message('"' * 40_000, "[t] quotes")
    assert len(json.dumps(msg).encode()) <= 32_000
