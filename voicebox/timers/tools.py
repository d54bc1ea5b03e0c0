"""The timer client tools: set_timer, set_alarm, cancel_timer, list_timers.

Each answers with a sentence the agent can say; a bad parameter is an error result saying what
was wrong (a `TimerError` raised to `ToolRegistry.run`), never anything else.
"""

from __future__ import annotations

from typing import Any

from voicebox.convai.tools import Param, ToolRegistry, ToolSpec
from voicebox.timers.book import TimerBook
from voicebox.timers.ringer import Timers

_NAME = "a short name to tell it by, e.g. 'pasta' (optional)"
SET_TIMER = ToolSpec(
    "set_timer",
    "Start a countdown timer on the box; it rings on the box when it is done, even if the "
    "conversation has ended or the network is down.",
    (
        Param(
            "duration",
            "string",
            "how long: '8 minutes', '1 hour 30 minutes', '90 seconds', or a number of seconds",
            "8 minutes",
        ),  # fmt: skip
        Param("name", "string", _NAME, "pasta", required=False),
    ),
)
SET_ALARM = ToolSpec(
    "set_alarm",
    "Set an alarm at a local time of day (the box's time zone), today or, if that time has "
    "passed, tomorrow; it rings on the box.",
    (
        Param("time", "string", "the time of day: '07:30', '19:45' or '7:30 pm'", "07:30"),
        Param("name", "string", _NAME, "wake up", required=False),
    ),
)
CANCEL_TIMER = ToolSpec(
    "cancel_timer",
    "Cancel a timer or alarm by its name, or the only one set; also stops it ringing.",
    (Param("name", "string", "its name; leave out when only one is set", "pasta", False),),
)
LIST_TIMERS = ToolSpec("list_timers", "The timers and alarms set, with when each rings.")
SPECS = (SET_TIMER, SET_ALARM, CANCEL_TIMER, LIST_TIMERS)


def register(registry: ToolRegistry, timers: Timers) -> None:
    """Add the four tools, bound to the daemon's timers."""

    def set_timer(p: dict[str, Any]) -> str:
        now = timers.now()
        t = timers.book.set_timer(now, p.get("duration"), p.get("name"))
        timers.changed()
        return TimerBook.said_set(t, now)

    def set_alarm(p: dict[str, Any]) -> str:
        now = timers.now()
        t = timers.book.set_alarm(now, p.get("time"), p.get("name"))
        timers.changed()
        return TimerBook.said_set(t, now)

    def cancel_timer(p: dict[str, Any]) -> str:
        return timers.cancel(p.get("name"), "tool")

    def list_timers(p: dict[str, Any]) -> str:
        return timers.book.said_list(timers.now())

    registry.register("set_timer", set_timer, SET_TIMER)
    registry.register("set_alarm", set_alarm, SET_ALARM)
    registry.register("cancel_timer", cancel_timer, CANCEL_TIMER)
    registry.register("list_timers", list_timers, LIST_TIMERS)
