"""Google Chat incoming-webhook notifications, usable from flows and from server automations."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import httpx
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import NotificationBlock, NotificationError
from pydantic import Field, SecretStr

from blocks.store import OpsStore
from rules.text import redact

MAX_MESSAGE_BYTES = 32_000
_TAG = re.compile(r"^\[([^\]]{1,80})\]")
_RETRYABLE = {429, 500, 502, 503, 504}
_MENTION = re.compile(r"<users/[^<>\s]{1,100}>")


def thread_key(subject: str | None, now: datetime) -> str | None:
    """One thread per job per day: the subject's leading `[job]` plus the UTC date."""
    match = _TAG.match(subject or "")
    return f"{match.group(1)}-{now:%Y-%m-%d}" if match else None


def _fit(build, text: str, limit: int) -> dict[str, Any]:
    """Shorten `text` until the message built from it is within `limit` bytes."""
    message = build(text)
    size = len(json.dumps(message).encode())
    while size > limit:
        excess = size - limit
        # Escaping can make one character several bytes: cut at least the excess, plus margin.
        keep = max(0, len(text) - excess - 200)
        dropped = len(text) - keep
        text = text[:keep] + f"\n… (truncated {dropped:,} characters to fit Google Chat's limit)"
        message = build(text)
        size = len(json.dumps(message).encode())
    return message


def chat_message(
    body: str,
    subject: str | None,
    *,
    cards: bool = True,
    thread: str | None = None,
    limit: int = MAX_MESSAGE_BYTES,
) -> dict[str, Any]:
    """A Google Chat message: a card with a plain-text fallback, or plain text only."""
    body, subject = redact(body), redact(subject or "")
    # Mentions (`<users/123>`, `<users/all>`) notify only from `text`, never from a card.
    mentioned = " ".join(dict.fromkeys(_MENTION.findall(body)))

    def build(text: str) -> dict[str, Any]:
        message: dict[str, Any]
        plain = f"*{subject}*\n{text}" if subject else text
        if cards:
            shown = _MENTION.sub(lambda m: "@" + m.group(0)[7:-1], text)
            widget = {"textParagraph": {"text": html.escape(shown).replace("\n", "<br>")}}
            card: dict[str, Any] = {"sections": [{"widgets": [widget]}]}
            if subject:
                card["header"] = {"title": subject[:200]}
            message = {
                "cardsV2": [{"cardId": "dataplatform-ops", "card": card}],
                "fallbackText": plain[:1_000],
            }
            if mentioned:
                message["text"] = mentioned
        else:
            message = {"text": plain}
        if thread:
            message["thread"] = {"threadKey": thread}
        return message

    return _fit(build, body, limit)


class GoogleChatWebhook(NotificationBlock):
    """Send notifications to a Google Chat space through its incoming webhook.

    Example:
        ```python
        from blocks.google_chat import GoogleChatWebhook

        GoogleChatWebhook.load("ops-chat").notify("3 idle volumes", subject="[idle-resources]")
        ```
    """

    _block_type_name = "Google Chat Webhook"
    _block_type_slug = "google-chat-webhook"
    _description = "Posts cards to a Google Chat space through an incoming webhook."
    _documentation_url = "https://developers.google.com/workspace/chat/quickstart/webhooks"

    url: SecretStr = Field(
        description="The space's incoming-webhook URL, including its key and token.",
    )
    use_cards: bool = Field(
        default=True, description="Send cardsV2 messages; plain text is used if cards are refused."
    )
    thread_per_day: bool = Field(
        default=True,
        description="Reply in one thread per `[job]` subject tag and UTC day.",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=10, description="Attempts per message on 429, 5xx and network errors."
    )
    max_backoff_seconds: float = Field(
        default=30.0, ge=0, description="Longest wait between attempts, Retry-After included."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="HTTP timeout per attempt.")
    outbox: OpsStore | None = Field(
        default=None,
        description=(
            "Store that keeps messages Google Chat refused after all attempts; they are sent "
            "before the next message. Use the same store as the flows."
        ),
    )

    def _request(self, body: str, subject: str | None, cards: bool) -> tuple[str, dict[str, Any]]:
        now = datetime.now(timezone.utc)
        thread = thread_key(subject, now) if self.thread_per_day else None
        url = self.url.get_secret_value()
        if thread:
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        return url, chat_message(body, subject, cards=cards, thread=thread)

    def _wait(self, response: httpx.Response | None, attempt: int) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_backoff_seconds)
        return min(0.5 * 2**attempt, self.max_backoff_seconds)

    def _verdict(self, response: httpx.Response | None, error: Exception | None) -> str:
        """`done`, `retry`, `plain` (cards refused) or `fail`."""
        if error is not None:
            return "retry"
        assert response is not None
        if response.is_success:
            return "done"
        if response.status_code in _RETRYABLE:
            return "retry"
        if response.status_code == 400 and "card" in response.text.lower():
            return "plain"
        return "fail"

    def _failure(self, response: httpx.Response | None, error: Exception | None) -> NotificationError:
        what = f"HTTP {response.status_code}: {response.text[:300]}" if response is not None else repr(error)
        secret = (self.url.get_secret_value(),)
        log = redact(f"Google Chat webhook failed: {what}", secret)
        error = NotificationError(log=log)
        error.args = (log,)  # NotificationError keeps the text only in `.log`
        return error

    def _send(self, client: httpx.Client, body: str, subject: str | None) -> None:
        cards = self.use_cards
        for attempt in range(self.max_attempts):
            url, message = self._request(body, subject, cards)
            response, error = None, None
            try:
                response = client.post(url, json=message)
            except httpx.HTTPError as exc:
                error = exc
            verdict = self._verdict(response, error)
            if verdict == "done":
                return
            if verdict == "plain" and cards:
                cards = False
                continue
            if verdict != "retry" or attempt == self.max_attempts - 1:
                raise self._failure(response, error)
            time.sleep(self._wait(response, attempt))

    def _deliver(self, body: str, subject: str | None) -> None:
        with httpx.Client(timeout=self.timeout_seconds) as client:
            if self.outbox is not None:
                for message_id, old_subject, old_body in self.outbox.claim_pending_messages():
                    try:
                        self._send(client, old_body, old_subject)
                    except NotificationError:
                        self.outbox.release_message(message_id)
                        break  # still down: keep the rest in order for the next send
                    self.outbox.mark_message_delivered(message_id)
            if not body.strip():
                return  # a flush request: only pending messages were to be sent
            try:
                self._send(client, body, subject)
            except NotificationError:
                if self.outbox is not None:
                    self.outbox.enqueue_message(subject or "", body)
                raise

    async def anotify(self, body: str, subject: str | None = None) -> None:
        # The server awaits notify(); the sending itself is blocking I/O, kept off its loop.
        await asyncio.to_thread(self._deliver, body, subject)

    @async_dispatch(anotify)
    def notify(self, body: str, subject: str | None = None) -> None:
        """Send one message; retries 429/5xx, raises `NotificationError` when it gives up.

        With an `outbox`, a message that could not be delivered is kept there and sent,
        in order, before the next message; an empty body only delivers pending messages.
        """
        self._deliver(body, subject)
