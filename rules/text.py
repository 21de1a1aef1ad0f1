"""Text hygiene for anything that leaves the process: chat messages, events, artifacts."""

from __future__ import annotations

import re
from datetime import datetime

_SECRET_QUERY = re.compile(r"(?i)\b(key|token|sig|signature|password|secret|x-amz-[a-z-]+)=[^&\s\"'<>]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+):([^@\s/]+)@")
# One pass, leftmost first: quoted names stay, strings and numbers are masked, and the column
# positions of GROUP BY / ORDER BY (`GROUP BY 1, 2`) stay, since they are not data.
_SQL_TOKEN = re.compile(r"""
    (?P<name>"(?:[^"]|"")*"|`[^`]*`)
  | (?P<string>'(?:[^']|'')*')
  | (?P<position>\b(?:GROUP|ORDER)\s+BY\s+\d+(?:\s*,\s*\d+)*\b)
  | (?P<number>(?<![\w.$])\d+(?:\.\d+)?(?![\w.]))
""", re.IGNORECASE | re.VERBOSE)
_MASKED = {"string": "'?'", "number": "?"}


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove credentials from free text: URL query secrets, passwords in URLs, known values."""
    for value in secrets:
        if value:
            text = text.replace(value, "***")
    text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)


def mask_sql_literals(sql: str, max_chars: int = 500) -> str:
    """Query text safe to show in chat: string and number literals masked, then truncated."""
    masked = _SQL_TOKEN.sub(lambda m: _MASKED.get(m.lastgroup or "", m.group()), sql)
    masked = " ".join(masked.split())
    return truncate(masked, max_chars)


def truncate(text: str, max_chars: int, note: str = "…") -> str:
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(note))] + note


def window_note(scope: str, what: str, start: datetime, now: datetime, first_run: str | None = None) -> str:
    """What a watch read in one place (`what`: "jobs created", "queries started"); on a first run
    `first_run` says how far back it read and how to read further."""
    note = f"{scope}: read {what} {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC"
    return f"{note} (first run: {first_run})" if first_run else note
