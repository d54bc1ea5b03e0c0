"""The timer book, pure: what the tools accept and refuse, what they say, what is due, and what
a clock step does to what this run set and to what was loaded."""

from __future__ import annotations

import datetime

import pytest

from voicebox.timers.book import (
    MISSED_AFTER_S,
    Timer,
    TimerBook,
    TimerError,
    next_clock,
    parse_clock,
    parse_duration,
    say_duration,
)

NOW = datetime.datetime(2026, 12, 7, 19, 34, 0).timestamp()  # local time


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("8 minutes", 480.0),
        ("1 hour 30 minutes", 5400.0),
        ("1h30m", 5400.0),
        ("2.5 min", 150.0),
        ("an hour", 3600.0),
        ("half an hour", 1800.0),
        ("1 minute and 30 seconds", 90.0),
        ("PT8M", 480.0),
        ("pt1h0m5s", 3605.0),
    ],
)
def test_durations_as_an_agent_says_them(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("eight minutes", "not a length of time"),
        ("8 fortnights", "unit I do not know"),
        (0, "at least one second"),
        (-5, "at least one second"),
        (90000, "at most 24 hours"),
        (True, "length of time"),
        (None, "like '8 minutes'"),
    ],
)
def test_bad_durations_are_refused_saying_why(value: object, says: str) -> None:
    with pytest.raises(TimerError, match=says):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "hm"),
    [("07:30", (7, 30)), ("7:30 pm", (19, 30)), ("7 am", (7, 0)), ("12 am", (0, 0)),
     ("19h45", (19, 45)), ("2026-12-08T06:15:00+01:00", (6, 15)), ("23.59", (23, 59))],
)  # fmt: skip
def test_times_of_day(value: str, hm: tuple[int, int]) -> None:
    assert parse_clock(value) == hm


@pytest.mark.parametrize("value", ["25:00", "13 pm", "noonish", "", "7:61"])
def test_bad_times_of_day_are_refused(value: str) -> None:
    with pytest.raises(TimerError):
        parse_clock(value)


def test_an_alarm_is_today_if_still_ahead_else_tomorrow() -> None:
    today = datetime.datetime.fromtimestamp(next_clock(NOW, 19, 45))
    assert (today.day, today.hour, today.minute) == (7, 19, 45)
    tomorrow = datetime.datetime.fromtimestamp(next_clock(NOW, 7, 30))
    assert (tomorrow.day, tomorrow.hour, tomorrow.minute) == (8, 7, 30)
    assert next_clock(NOW, 19, 34) > NOW  # the minute now has begun: tomorrow


def test_set_list_cancel_say_what_happened() -> None:
    book = TimerBook(limit=3)
    pasta = book.set_timer(NOW, "8 minutes", "pasta")
    assert book.said_set(pasta, NOW) == "timer 'pasta' set for 8 minutes, rings at 19:42"
    alarm = book.set_alarm(NOW, "7:30 am")
    assert alarm.name == "alarm 1" and alarm.clock == "07:30"
    assert book.said_set(alarm, NOW).startswith("alarm 'alarm 1' set for 07:30 tomorrow, in 11 h")
    unnamed = book.set_timer(NOW, 30)
    assert unnamed.name == "timer 1"
    with pytest.raises(TimerError, match="at most 3"):
        book.set_timer(NOW, 60, "tea")
    listed = book.said_list(NOW)
    assert listed.startswith("3 set: timer 'timer 1' rings at 19:34, in 30 seconds; timer 'pasta'")
    with pytest.raises(TimerError, match="say which one"):
        book.cancel()
    with pytest.raises(TimerError, match="no timer or alarm is named 'tea'"):
        book.cancel("tea")
    gone = book.cancel("PASTA")  # names are told apart without case
    assert book.said_cancelled(gone, NOW + 60) == "timer 'pasta' cancelled; it had 7 minutes to go"
    with pytest.raises(TimerError, match="a timer is already named 'timer 1'"):
        book.set_timer(NOW, 60, "Timer 1")
    book.cancel("timer 1")
    assert book.cancel().name == "alarm 1"  # the only one left
    with pytest.raises(TimerError, match="no timers"):
        book.cancel()
    assert book.said_list(NOW) == "no timers or alarms are set"


def test_due_rings_long_overdue_is_missed() -> None:
    book = TimerBook()
    book.set_timer(NOW, 10, "soon")
    book.set_timer(NOW - 3600, 60, "long ago")
    book.set_timer(NOW, 3600, "later")
    ring, missed = book.take_due(NOW + 10)
    assert [t.name for t in ring] == ["soon"]
    assert [t.name for t in missed] == ["long ago"]  # due MISSED_AFTER_S+ before it was seen
    assert [t.name for t in book.pending()] == ["later"]
    assert book.take_due(NOW + 11) == ([], [])
    assert MISSED_AFTER_S == 60.0


def test_a_clock_step_keeps_what_this_run_set_and_leaves_what_was_loaded() -> None:
    loaded = Timer("from before", "timer", NOW + 300, NOW - 300, duration_s=600, live=False)
    book = TimerBook([loaded])
    timer = book.set_timer(NOW, 600, "tea")  # set with the clock 2 hours behind
    alarm = book.set_alarm(NOW, "21:00", "film")  # meant as 21:00 today, real time
    book.stepped(+7200.0)  # NTP: the clock was two hours behind
    by_name = {t.name: t for t in book.pending()}
    assert by_name["tea"].due == timer.due + 7200  # still ten minutes after it was set
    assert by_name["from before"].due == loaded.due  # set under a good clock: its instant holds
    film = datetime.datetime.fromtimestamp(by_name["film"].due)
    assert (film.day, film.hour) == (8, 21)  # the corrected "now" is 21:34: the next 21:00
    assert alarm.due < by_name["film"].due
    assert say_duration(by_name["tea"].due - (NOW + 7200)) == "10 minutes"


def test_json_round_trip_marks_what_was_loaded() -> None:
    t = Timer("pasta", "timer", NOW + 1, NOW, duration_s=1.0)
    back = Timer.from_json(t.to_json())
    assert back == Timer("pasta", "timer", NOW + 1, NOW, duration_s=1.0, live=False)
    with pytest.raises(ValueError):
        Timer.from_json({**t.to_json(), "kind": "egg"})
