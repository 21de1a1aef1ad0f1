"""Business-hours schedules from a resource tag, and the pure "is it on now?" question.

Grammar of the `dataplatform-ops:schedule` tag value (case-insensitive, single spaces)::

    schedule  := days " " span " " zone [" holidays=" calendar]
    days      := "daily" | "weekdays" | "weekends" | dayspec ("," dayspec)*
    dayspec   := day | day "-" day            day := mon|tue|wed|thu|fri|sat|sun
    span      := HH:MM "-" HH:MM              00:00 <= start, end <= 24:00, start != end
    zone      := an IANA time zone name       e.g. Asia/Seoul, Europe/Berlin, UTC
    calendar  := a holiday calendar name      [a-z0-9_-]+ (a file `calendars/<name>.txt`)

Examples: `weekdays 08:00-20:00 Asia/Seoul`, `mon-thu,sat 09:30-18:00 Europe/Berlin
holidays=de`, `daily 20:00-06:00 UTC` (an overnight span belongs to the day it starts).

A day listed in `days` that is a holiday (an ISO date in the schedule's own time zone) has
no on-hours. The override tag `dataplatform-ops:up-until=<ISO date-time>` keeps a resource
on until that moment (local time of the schedule when it has no offset): "keep it up
tonight". When it runs out inside off-hours, that moment is an off transition.

Everything here is pure: `now` is always a parameter, time zones come from `zoneinfo`
(so DST shifts move UTC boundaries, never local ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.config import Explained

SCHEDULE_TAG = "dataplatform-ops:schedule"
OVERRIDE_TAG = "dataplatform-ops:up-until"

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_SETS = {
    "daily": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
}
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_CALENDAR = re.compile(r"^[a-z0-9_-]+$")
# How far back to look for the last transition: covers a long holiday calendar.
_LOOKBACK_DAYS = 400


class ScheduleError(Explained, ValueError):
    """A schedule tag that does not follow the grammar; the message says what is wrong."""


@dataclass(frozen=True)
class Schedule:
    days: frozenset[int]  # Monday = 0
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight; 1440 = 24:00; end < start spans midnight
    zone: str
    calendar: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def __str__(self) -> str:
        return format_schedule(self)


def _parse_days(text: str) -> frozenset[int]:
    if text in _DAY_SETS:
        return _DAY_SETS[text]
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ScheduleError(
                f"days {text!r}: use daily, weekdays, weekends or a list like mon-fri,sat"
            )
        a, b = DAYS.index(first), DAYS.index(last or first)
        if b < a:
            raise ScheduleError(f"day range {part!r} runs backwards: write it as {last}-{first}")
        days.update(range(a, b + 1))
    return frozenset(days)


def _minutes(hh: str, mm: str, text: str) -> int:
    h, m = int(hh), int(mm)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ScheduleError(f"time in {text!r} is not a valid HH:MM between 00:00 and 24:00")
    return h * 60 + m


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule tag value; `ScheduleError` says which part is wrong and how to fix it."""
    parts = text.strip().split()
    if len(parts) not in (3, 4):
        raise ScheduleError(
            f"{text!r}: expected '<days> <HH:MM-HH:MM> <time zone> [holidays=<calendar>]', "
            "e.g. 'weekdays 08:00-20:00 Asia/Seoul'"
        )
    days = _parse_days(parts[0].lower())
    span = _SPAN.match(parts[1])
    if not span:
        raise ScheduleError(f"span {parts[1]!r}: write it as HH:MM-HH:MM, e.g. 08:00-20:00")
    start = _minutes(span[1], span[2], parts[1])
    end = _minutes(span[3], span[4], parts[1])
    if start == end or start == 1440:
        raise ScheduleError(f"span {parts[1]!r} is empty: start and end must differ, start before 24:00")
    try:
        ZoneInfo(parts[2])
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"time zone {parts[2]!r} is unknown: use an IANA name like Asia/Seoul") from None
    calendar = None
    if len(parts) == 4:
        key, _, calendar = parts[3].partition("=")
        if key.lower() != "holidays" or not _CALENDAR.match(calendar):
            raise ScheduleError(f"{parts[3]!r}: the optional fourth part is holidays=<calendar name>")
    return Schedule(days, start, end, parts[2], calendar)


def format_schedule(s: Schedule) -> str:
    named = next((k for k, v in _DAY_SETS.items() if v == s.days), None)
    days = named or ",".join(DAYS[d] for d in sorted(s.days))
    span = f"{s.start // 60:02d}:{s.start % 60:02d}-{s.end // 60:02d}:{s.end % 60:02d}"
    tail = f" holidays={s.calendar}" if s.calendar else ""
    return f"{days} {span} {s.zone}{tail}"


def parse_holidays(text: str) -> frozenset[date]:
    """A calendar file: one ISO date per line; `#` starts a comment; blank lines ignored."""
    found = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            found.add(date.fromisoformat(line))
        except ValueError:
            raise ScheduleError(f"line {n}: {line!r} is not an ISO date (YYYY-MM-DD)") from None
    return frozenset(found)


def parse_override(text: str, schedule: Schedule) -> datetime:
    """The `up-until` override value as an aware UTC datetime (a bare date means its midnight)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(
            f"{OVERRIDE_TAG}={text!r}: write an ISO date-time like 2026-11-26T08:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=schedule.tz)
    return value.astimezone(timezone.utc)


def _wall(d: date, minute: int) -> datetime:
    return datetime.combine(d, time()) + timedelta(minutes=minute)


def _in_gap(wall: datetime, tz: ZoneInfo) -> bool:
    """A wall-clock time that does not exist (the hour skipped when clocks spring forward)."""
    return wall.replace(tzinfo=tz).astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != wall


def _local(d: date, minute: int, tz: ZoneInfo) -> datetime:
    """Local wall-clock time -> UTC. A time in a DST gap moves to the first valid minute after
    it (02:30 on a spring-forward night becomes 03:00), so a window never collapses to nothing;
    a folded time takes its first occurrence."""
    wall = _wall(d, minute)
    while _in_gap(wall, tz):
        wall += timedelta(minutes=1)
    return wall.replace(tzinfo=tz).astimezone(timezone.utc)


def dst_gap_note(s: Schedule, day: date) -> str | None:
    """What a DST gap did to the schedule's window on `day`, for people; None when nothing."""
    moved = [label for label, minute in (("start", s.start), ("end", s.end)) if _in_gap(_wall(day, minute), s.tz)]
    if not moved:
        return None
    return (f"{' and '.join(moved)} {_wall(day, s.start if moved[0] == 'start' else s.end):%H:%M} does not exist "
            f"on {day} in {s.zone} (clocks spring forward): moved to the next valid time")


def on_intervals(s: Schedule, first: date, last: date, holidays: Iterable[date] = ()) -> list[tuple[datetime, datetime]]:
    """On-hours as merged UTC [start, end) intervals for local days `first`..`last`."""
    off_days = frozenset(holidays)
    tz = s.tz
    spans = []
    d = first
    while d <= last:
        if d.weekday() in s.days and d not in off_days:
            end_day = d + timedelta(days=1) if s.end <= s.start else d
            end_minute = s.end
            spans.append((_local(d, s.start, tz), _local(end_day, end_minute, tz)))
        d += timedelta(days=1)
    merged: list[tuple[datetime, datetime]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def is_on_hours(s: Schedule, now: datetime, holidays: Iterable[date] = (), up_until: datetime | None = None) -> bool:
    """True when `now` falls in the schedule's on-hours (or before an `up_until` override)."""
    if up_until is not None and now < up_until:
        return True
    today = now.astimezone(s.tz).date()
    return any(a <= now < b for a, b in on_intervals(s, today - timedelta(days=1), today, holidays))


@dataclass(frozen=True)
class Transition:
    at: datetime  # UTC
    to_on: bool


def last_transition(s: Schedule, now: datetime, holidays: Iterable[date] = (),
                    up_until: datetime | None = None) -> Transition | None:
    """The most recent on/off boundary at or before `now`; None if there was none in ~a year.

    An override that ran out inside off-hours counts as an off transition at its expiry.
    """
    found = _previous(s, now, holidays)
    if up_until is not None and up_until <= now and not is_on_hours(s, up_until, holidays):
        if found is None or up_until > found.at:
            return Transition(up_until, False)
    return found


def _previous(s: Schedule, now: datetime, holidays: Iterable[date]) -> Transition | None:
    today = now.astimezone(s.tz).date()
    intervals = on_intervals(s, today - timedelta(days=_LOOKBACK_DAYS), today, holidays)
    best: Transition | None = None
    for a, b in intervals:
        if a <= now:
            best = Transition(a, True)
        if b <= now:
            best = Transition(b, False)
    return best


def on_hours_between(s: Schedule, start: datetime, end: datetime, holidays: Iterable[date] = ()) -> float:
    """Hours of on-time in [start, end)."""
    first = start.astimezone(s.tz).date() - timedelta(days=1)
    last = end.astimezone(s.tz).date()
    total = timedelta()
    for a, b in on_intervals(s, first, last, holidays):
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += hi - lo
    return total.total_seconds() / 3600
