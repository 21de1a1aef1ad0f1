"""Google Chat incoming-webhook notifications, usable from flows and from server automations."""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import NotificationBlock, NotificationError
from pydantic import Field, SecretStr

from blocks.store import OpsStore
from rules.messages import refused_earlier_note, store_down_note, truncated_note
from rules.text import redact

MAX_MESSAGE_BYTES = 32_000
MIN_BACKOFF_SECONDS = 1.0
_TAG = re.compile(r"^\[([^\]]{1,80})\]")
_RETRYABLE = {429, 500, 502, 503, 504}
_MENTION = re.compile(r"<users/[^<>\s]{1,100}>")


def thread_key(subject: str | None, now: datetime) -> str | None:
    """One thread per job per day: the subject's leading `[job]` plus the UTC date."""
    match = _TAG.match(subject or "")
    return f"{match.group(1)}-{now:%Y-%m-%d}" if match else None


def _size(message: dict[str, Any]) -> int:
    """Bytes of the message as httpx sends it (UTF-8, not \\u-escaped)."""
    return len(json.dumps(message, ensure_ascii=False).encode())


def _fit(build, text: str, limit: int, language: str = "en") -> dict[str, Any]:
    """Shorten `text` until the message built from it is within `limit` bytes."""
    message = build(text)
    size = _size(message)
    while size > limit:
        excess = size - limit
        # Escaping can make one character several bytes: cut at least the excess, plus margin.
        keep = max(0, len(text) - excess - 200)
        dropped = len(text) - keep
        text = text[:keep] + "\n" + truncated_note(dropped, language)
        message = build(text)
        size = _size(message)
    return message


def chat_message(
    body: str,
    subject: str | None,
    *,
    cards: bool = True,
    thread: str | None = None,
    limit: int = MAX_MESSAGE_BYTES,
    language: str = "en",
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

    return _fit(build, body, limit, language)


class Refused(NotificationError):
    """Google Chat refused the message itself (HTTP 400, also as plain text): retrying cannot help."""


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
    min_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Least time between two messages to the space (Chat takes about one a second).",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="HTTP timeout per attempt.")
    language: Literal["en", "ko"] = Field(
        default="en",
        description="Language of the messages: `en` or `ko` (한국어). Apply the automations again "
                    "after changing it (`make automations`).",
    )
    outbox: OpsStore | None = Field(
        default=None,
        description=(
            "Store that keeps messages Google Chat did not take; they are sent, in order, before "
            "the next message. Use the same store as the flows: a digest chat refuses then makes "
            "its findings due again."
        ),
    )

    def _request(self, body: str, subject: str | None, cards: bool) -> tuple[str, dict[str, Any]]:
        now = datetime.now(timezone.utc)
        thread = thread_key(subject, now) if self.thread_per_day else None
        url = self.url.get_secret_value()
        if thread:
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        return url, chat_message(body, subject, cards=cards, thread=thread, language=self.language)

    def _wait(self, response: httpx.Response | None, attempt: int) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        wanted = float(retry_after) if retry_after and retry_after.isdigit() else 0.5 * 2**attempt
        # A floor: `Retry-After: 0` must not turn the attempts into a burst.
        return min(max(wanted, MIN_BACKOFF_SECONDS), self.max_backoff_seconds)

    def _verdict(self, response: httpx.Response | None, error: Exception | None) -> str:
        """`done`, `retry`, `refused` (this message, HTTP 400) or `fail`."""
        if error is not None:
            return "retry"
        assert response is not None
        if response.is_success:
            return "done"
        if response.status_code in _RETRYABLE:
            return "retry"
        return "refused" if response.status_code == 400 else "fail"

    def _failure(
        self, response: httpx.Response | None, error: Exception | str | None,
        kind: type[NotificationError] = NotificationError,
    ) -> NotificationError:
        what = (f"HTTP {response.status_code}: {response.text[:300]}" if response is not None
                else error if isinstance(error, str) else repr(error))
        secret = (self.url.get_secret_value(),)
        log = redact(f"Google Chat webhook failed: {what}", secret)
        failure = kind(log=log)
        failure.args = (log,)  # NotificationError keeps the text only in `.log`
        return failure

    def _post(self, client: httpx.Client, url: str, message: dict[str, Any]) -> httpx.Response:
        """POST at Google Chat's pace: at most one message per `min_interval_seconds` per space."""
        key = self.url.get_secret_value()  # the caller holds this space's lock
        wait = _LAST_POST.get(key, 0.0) + self.min_interval_seconds - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _LAST_POST[key] = time.monotonic()
        return client.post(url, json=message)

    def _send(self, client: httpx.Client, body: str, subject: str | None) -> None:
        """Deliver one message or raise: `Refused` (400, also as plain text) or `NotificationError`."""
        cards, attempt = self.use_cards, 0
        while True:
            url, message = self._request(body, subject, cards)
            response, error = None, None
            try:
                response = self._post(client, url, message)
            except httpx.HTTPError as exc:
                error = exc
            verdict = self._verdict(response, error)
            if verdict == "done":
                return
            if verdict == "refused" and cards:
                cards = False  # one more try as plain text: most refusals are about the card
                continue
            if verdict == "refused":
                raise self._failure(response, error, Refused)
            attempt += 1
            if verdict == "fail" or attempt == self.max_attempts:
                raise self._failure(response, error)
            time.sleep(self._wait(response, attempt - 1))

    def _deliver(self, body: str, subject: str | None, refusals: list[tuple[str, str]]) -> None:
        """Send; `refusals` gets (subject, error) of each message Google Chat refused for good."""
        # One sender per space at a time in this process, so concurrent alerts keep their order.
        space = _space_lock(self.url.get_secret_value())
        with space, httpx.Client(timeout=self.timeout_seconds) as client:
            run = _Delivery(self, client, refusals)
            waiting = run.flush()
            if not body.strip():
                return  # a flush request: only pending messages were to be sent
            if waiting and run.store("enqueue_message", subject or "", body) is not None:
                # Behind the ones still waiting, so they keep their order.
                raise self._failure(None, "earlier messages are still waiting; this one waits behind them")
            try:
                run.send(body, subject)
            except Refused as refused:
                kept = run.store("enqueue_message", subject or "", body, refused.log)
                run.refused_now(kept, subject, refused)
                raise
            except NotificationError:
                run.store("enqueue_message", subject or "", body)
                raise

    async def anotify(self, body: str, subject: str | None = None) -> None:
        # The server awaits notify(); the sending itself is blocking I/O, kept off its loop.
        refusals: list[tuple[str, str]] = []
        try:
            await asyncio.to_thread(self._deliver, body, subject, refusals)
        finally:
            from tasks.notify import aemit_chat_refused  # see _LATE_IMPORT

            await aemit_chat_refused(refusals)

    @async_dispatch(anotify)
    def notify(self, body: str, subject: str | None = None) -> None:
        """Send one message; retries 429/5xx, raises `NotificationError` when it gives up.

        With an `outbox`, messages that could not be delivered wait there and are sent, in
        order, before the next message; an empty body only delivers pending messages. The
        outbox is best-effort: when its store is down, the message is sent anyway and says so.
        A message refused with HTTP 400 is tried once more as plain text, then kept as
        undeliverable, announced as an event and mentioned in the next message that goes through.
        """
        refusals: list[tuple[str, str]] = []
        try:
            self._deliver(body, subject, refusals)
        finally:
            from tasks.notify import emit_chat_refused  # see _LATE_IMPORT

            emit_chat_refused(refusals)


class _Delivery:
    """One `notify` call: the outbox kept best-effort and refusals told in the next message."""

    def __init__(
        self, block: GoogleChatWebhook, client: httpx.Client, refusals: list[tuple[str, str]]
    ) -> None:
        self.block, self.client, self.refusals = block, client, refusals
        self.store_down: str | None = None
        self.untold: list[tuple[int | None, str, str]] = self.store("unsurfaced_refusals") or []

    def store(self, method: str, *args: Any) -> Any:
        """Call an outbox method; a store failure is noted, never raised (None is returned)."""
        outbox = self.block.outbox
        if outbox is None or self.store_down:
            return None
        try:
            return getattr(outbox, method)(*args)
        except Exception as exc:  # any driver or SQL error means the store is unusable now
            self.store_down = f"{outbox.safe_url} ({type(exc).__name__})"
            return None

    def send(self, body: str, subject: str | None) -> None:
        language = self.block.language
        notes = [refused_earlier_note(s, e, language) for _, s, e in self.untold]
        if self.store_down:
            notes.append(store_down_note(self.store_down, language))
        self.block._send(self.client, "\n".join([*notes, body]), subject)
        told = [i for i, _, _ in self.untold if i is not None]
        self.untold = []
        if told:
            self.store("mark_refusals_surfaced", told)

    def refused_now(self, message_id: int | None, subject: str | None, refused: Refused) -> None:
        self.untold.append((message_id, subject or "", refused.log))
        self.refusals.append((subject or "", refused.log))

    def flush(self) -> bool:
        """Send what waits in the outbox, oldest first; whether some still wait (chat down)."""
        while batch := self.store("claim_pending_messages"):
            for n, (message_id, subject, body) in enumerate(batch):
                try:
                    self.send(body, subject)
                except Refused as refused:
                    self.store("mark_message_refused", message_id, refused.log)
                    self.refused_now(message_id, subject, refused)
                    continue
                except NotificationError:
                    self.store("release_messages", [m for m, _, _ in batch[n:]])
                    return True
                self.store("mark_message_delivered", message_id)
        return False


# _LATE_IMPORT: `import prefect` loads this collection's blocks before it configures logging,
# which would drop the log handler `tasks.notify` installs when imported: import it on use.
_LAST_POST: dict[str, float] = {}  # webhook URL -> when this process last posted to it
_SPACE_LOCKS: dict[str, threading.Lock] = {}
_SPACE_LOCKS_LOCK = threading.Lock()


def _space_lock(url: str) -> threading.Lock:
    with _SPACE_LOCKS_LOCK:
        return _SPACE_LOCKS.setdefault(url, threading.Lock())
