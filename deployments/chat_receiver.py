"""A local stand-in for a Google Chat space: records (and optionally prints) what it receives.

Used by the tests and by `make demo`. It checks every POST against the incoming-webhook
message format (JSON with `text` and/or `cardsV2`, at most 32,000 bytes) and answers 400
when the message would be refused by Google Chat, so a malformed message fails loudly.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_MESSAGE_BYTES = 32_000
DOWN = 0  # a scripted "status": close the connection without answering, as a space that is down


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    raw: bytes
    message: dict[str, Any] | None
    problem: str | None
    status: int

    @property
    def text(self) -> str:
        """Everything a person would read in the message, as one string."""
        return json.dumps(self.message or {}, ensure_ascii=False)


def validate(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The message, or why Google Chat would refuse it."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return None, f"message is {len(raw)} bytes, over {MAX_MESSAGE_BYTES}"
    try:
        message = json.loads(raw)
    except ValueError:
        return None, "body is not JSON"
    if not isinstance(message, dict):
        return None, "body is not a JSON object"
    if not message.get("text") and not message.get("cardsV2"):
        return None, "message has neither text nor cardsV2"
    for card in message.get("cardsV2", []):
        if "card" not in card or "sections" not in card["card"]:
            return None, "cardsV2 entry without card.sections"
    thread = message.get("thread")
    if thread is not None and not (isinstance(thread, dict) and thread.get("threadKey")):
        return None, "thread without threadKey"
    return message, None


@dataclass
class ChatReceiver:
    """Threaded HTTP server on 127.0.0.1; `url` is the webhook URL to put in a block."""

    echo: bool = False
    received: list[Received] = field(default_factory=list)
    _script: deque[int] = field(default_factory=deque)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                message, problem = validate(raw)
                status = 400 if problem else 200
                with receiver._cond:
                    if receiver._script:
                        status = receiver._script.popleft()
                    parts = urlsplit(self.path)
                    receiver.received.append(
                        Received(parts.path, parse_qs(parts.query), raw, message, problem, status)
                    )
                    receiver._cond.notify_all()
                if status == DOWN:
                    self.close_connection = True
                    return
                if receiver.echo and status == 200:
                    receiver.print_message(message or {})
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"error": problem} if problem else {}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ChatReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        # Shaped like a real webhook URL, so redaction of key/token is exercised.
        return f"http://{host}:{port}/v1/spaces/LOCAL/messages?key=local-key&token=local-token"

    def respond_with(self, *statuses: int) -> None:
        """Answer the next POSTs with these statuses (e.g. 429, 429, or `DOWN`), then normally."""
        with self._cond:
            self._script.extend(statuses)

    @property
    def delivered(self) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until `count` messages were delivered (status 200); returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.received if r.status == 200]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return self.delivered

    def settle(self, quiet: float = 2.0, timeout: float = 30.0) -> list[Received]:
        """Wait until nothing new has arrived for `quiet` seconds; returns what was delivered."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            with self._cond:
                now_seen = len(self.received)
            if now_seen == seen:
                break
            seen = now_seen
            time.sleep(quiet)
        return self.delivered

    @staticmethod
    def print_message(message: dict[str, Any]) -> None:
        title, text = readable(message)
        print(f"\n💬 {title}\n{text}\n", flush=True)


def readable(message: dict[str, Any]) -> tuple[str, str]:
    """A message's title and text as a person sees them (a card's, or the plain text)."""
    title, text = "", message.get("text", "")
    for card in message.get("cardsV2", []):
        title = card["card"].get("header", {}).get("title", "")
        for section in card["card"]["sections"]:
            for widget in section.get("widgets", []):
                para = widget.get("textParagraph", {}).get("text", "")
                text = html.unescape(para.replace("<br>", "\n"))
    return title, text
