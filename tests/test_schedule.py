"""The schedule grammar and the on/off decision: pure, with a fixed `now`."""

from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.schedule import (
    DAYS,
    Schedule,
    ScheduleError,
    format_schedule,
    is_on_hours,
    last_transition,
    on_hours_between,
    parse_holidays,
    parse_override,
    parse_schedule,
)

UTC = timezone.utc
SEOUL = parse_schedule("weekdays 08:00-20:00 Asia/Seoul")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_parse_examples():
    assert SEOUL == Schedule(frozenset(range(5)), 480, 1200, "Asia/Seoul")
    s = parse_schedule("mon-wed,sat 09:30-18:00 Europe/Berlin holidays=de")
    assert s.days == {0, 1, 2, 5} and s.start == 570 and s.calendar == "de"
    assert str(s) == "mon,tue,wed,sat 09:30-18:00 Europe/Berlin holidays=de"
    assert parse_schedule("DAILY 00:00-24:00 UTC").end == 1440


@pytest.mark.parametrize("text, says", [
    ("weekdays 8-20 Asia/Seoul", "HH:MM-HH:MM"),
    ("weekdays 08:00-20:00 Mars/Olympus", "time zone 'Mars/Olympus' is unknown"),
    ("workdays 08:00-20:00 UTC", "days 'workdays'"),
    ("fri-mon 08:00-20:00 UTC", "runs backwards"),
    ("weekdays 08:00-08:00 UTC", "empty"),
    ("weekdays 08:00-25:00 UTC", "not a valid HH:MM"),
    ("weekdays 08:00-20:00", "expected '<days>"),
    ("weekdays 08:00-20:00 UTC calendar=kr", "holidays=<calendar name>"),
])
def test_bad_schedules_say_what_is_wrong(text, says):
    with pytest.raises(ScheduleError) as err:
        parse_schedule(text)
    assert says in str(err.value)


def test_weekdays_in_seoul():
    # Seoul is UTC+9, no DST. Wednesday 2026-11-25.
    assert is_on_hours(SEOUL, utc(2026, 11, 24, 23, 0))  # Wed 08:00 KST
    assert not is_on_hours(SEOUL, utc(2026, 11, 24, 22, 59))  # Wed 07:59 KST
    assert not is_on_hours(SEOUL, utc(2026, 11, 25, 11, 0))  # Wed 20:00 KST
    assert not is_on_hours(SEOUL, utc(2026, 11, 28, 3, 0))  # Sat noon KST
    assert is_on_hours(SEOUL, utc(2026, 11, 29, 23, 30))  # Mon 08:30 KST (still Sunday in UTC)


def test_last_transition_over_a_weekend():
    t = last_transition(SEOUL, utc(2026, 11, 29, 12, 0))  # Sunday
    assert t.at == utc(2026, 11, 27, 11, 0) and not t.to_on  # Friday 20:00 KST
    t = last_transition(SEOUL, utc(2026, 11, 30, 0, 0))  # Monday 09:00 KST
    assert t.at == utc(2026, 11, 29, 23, 0) and t.to_on


def test_dst_moves_utc_boundaries_not_local_ones():
    berlin = parse_schedule("weekdays 08:00-20:00 Europe/Berlin")
    # Before the 2026-10-25 switch Berlin is UTC+2; after it UTC+1.
    assert last_transition(berlin, utc(2026, 10, 23, 6, 30)).at == utc(2026, 10, 23, 6, 0)
    assert last_transition(berlin, utc(2026, 10, 26, 7, 30)).at == utc(2026, 10, 26, 7, 0)
    assert not is_on_hours(berlin, utc(2026, 10, 26, 6, 30))
    # Spring forward 2026-03-29 (a Sunday): Monday starts at 06:00 UTC.
    assert is_on_hours(berlin, utc(2026, 3, 30, 6, 0))
    # A daily schedule across the spring-forward night has 23 hours that day.
    daily = parse_schedule("daily 00:00-24:00 Europe/Berlin")
    assert on_hours_between(daily, utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0)) == 23


def test_overnight_span_belongs_to_its_start_day():
    night = parse_schedule("fri 22:00-06:00 UTC")
    assert is_on_hours(night, utc(2026, 11, 28, 5, 59))  # Saturday morning
    assert not is_on_hours(night, utc(2026, 11, 28, 22, 30))  # Saturday night
    assert last_transition(night, utc(2026, 11, 28, 7, 0)).at == utc(2026, 11, 28, 6, 0)


def test_holidays_are_off_all_local_day():
    holidays = {date(2026, 12, 25)}  # a Friday
    assert not is_on_hours(SEOUL, utc(2026, 12, 25, 3, 0), holidays)
    t = last_transition(SEOUL, utc(2026, 12, 25, 3, 0), holidays)
    assert t.at == utc(2026, 12, 24, 11, 0) and not t.to_on  # Thursday 20:00 KST
    assert parse_holidays("# kr\n2026-12-25\n\n2026-01-01  # new year\n") == {date(2026, 12, 25), date(2026, 1, 1)}
    with pytest.raises(ScheduleError, match="line 1"):
        parse_holidays("25/12/2026")


def test_override_keeps_it_up_tonight_then_is_an_off_transition():
    until = parse_override("2026-11-25T23:00", SEOUL)  # local time of the schedule
    assert until == utc(2026, 11, 25, 14, 0)
    assert is_on_hours(SEOUL, utc(2026, 11, 25, 13, 0), up_until=until)
    assert not is_on_hours(SEOUL, utc(2026, 11, 25, 14, 0), up_until=until)
    t = last_transition(SEOUL, utc(2026, 11, 25, 15, 0), up_until=until)
    assert t.at == until and not t.to_on
    with pytest.raises(ScheduleError, match="up-until"):
        parse_override("tonight", SEOUL)


def test_monthly_on_hours():
    # 4 full weeks of weekdays 08-20 = 20 days x 12 h.
    assert on_hours_between(SEOUL, utc(2026, 11, 1), utc(2026, 11, 29)) == 240


ZONES = st.sampled_from(["UTC", "Asia/Seoul", "Europe/Berlin", "America/New_York", "Australia/Sydney"])
MINUTES = st.integers(0, 1439)


@st.composite
def schedules(draw):
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(MINUTES)
    end = draw(st.integers(1, 1440).filter(lambda m: m != start))
    return Schedule(days, start, end, draw(ZONES), draw(st.none() | st.sampled_from(["kr", "de-2027"])))


@given(schedules())
def test_format_then_parse_is_identity(s):
    assert parse_schedule(format_schedule(s)) == s


@given(schedules(), st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                                 timezones=st.just(UTC)))
def test_state_now_matches_the_last_transition(s, now):
    t = last_transition(s, now)
    assert t is not None and t.at <= now
    assert is_on_hours(s, now) == t.to_on
    # Nothing changes between the last transition and now.
    assert is_on_hours(s, t.at) == t.to_on


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_schedule_error(text):
    try:
        parse_schedule(text)
    except ScheduleError:
        pass


def test_day_names_are_the_weekday_order():
    assert DAYS.index("mon") == date(2026, 11, 23).weekday()
    assert last_transition(SEOUL, utc(2026, 11, 25, 12, 0)).to_on is False


def test_a_window_in_a_spring_forward_gap_moves_to_the_next_valid_time_and_says_so():
    from datetime import date as day

    from rules.schedule import dst_gap_note, on_intervals

    s = parse_schedule("daily 02:30-03:30 America/New_York")
    # 02:30 does not exist on 2026-03-08: the window starts at 03:00 EDT (07:00 UTC), not zero-length.
    [(start, end)] = on_intervals(s, day(2026, 3, 8), day(2026, 3, 8))
    assert (start.hour, start.minute, end.hour, end.minute) == (7, 0, 7, 30)
    assert "start 02:30 does not exist on 2026-03-08" in dst_gap_note(s, day(2026, 3, 8))
    assert dst_gap_note(s, day(2026, 3, 9)) is None
