"""The timers and alarms the box holds, pure: set, cancel, list, what is due, what a clock step
does.

Every instant is wall-clock epoch seconds (what survives a restart). A timer rings `duration_s`
after it was set; an alarm at a local time of day (`clock`, "07:30"), today or the next day.
A clock step (NTP correcting a Pi with no RTC at boot) moves what was set in this run, whose
times were measured on the clock before the step: a timer keeps the rest of its duration, an
alarm goes to the next `clock` after the corrected moment it was set. What was loaded from disk
was set under an earlier, good clock and keeps its instant. Due more than MISSED_AFTER_S ago is
missed (the box was off), not rung. Errors are `TimerError` with a sentence the agent can say.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["timer", "alarm"]
MISSED_AFTER_S = 60.0  # due longer ago than this when first seen: missed, announced, not rung
MAX_DURATION_S = 24 * 3600.0
NAME_MAX = 40
_UNITS = {
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}  # fmt: skip
_PART = re.compile(r"(\d+(?:\.\d+)?|an?|half an?)\s*([a-z]+)")
_ISO = re.compile(r"p(?:t)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_CLOCK = re.compile(r"(\d{1,2})(?:[:.h](\d{2}))?(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?")


class TimerError(ValueError):
    """A request the book refuses; the message is a sentence for the agent."""


@dataclass(frozen=True)
class Timer:
    name: str
    kind: Kind
    due: float  # epoch seconds
    set_at: float  # epoch seconds, on the clock of the moment it was set
    duration_s: float | None = None  # timers
    clock: str | None = None  # alarms: "HH:MM", local time
    ringing: bool = False  # its ring began and has not been ended (by a stop or the limit)
    live: bool = True  # set in this run (False: loaded from disk)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["live"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Timer:
        kind = d["kind"]
        if kind not in ("timer", "alarm"):
            raise ValueError(f"kind {kind!r}")
        duration = d.get("duration_s")
        return cls(
            name=str(d["name"]),
            kind=kind,
            due=float(d["due"]),
            set_at=float(d["set_at"]),
            duration_s=None if duration is None else float(duration),
            clock=None if d.get("clock") is None else str(d["clock"]),
            ringing=bool(d.get("ringing", False)),
            live=False,
        )


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds, "8 minutes", "1h30m", "1 hour 30 minutes", "PT8M"."""
    if isinstance(value, bool):
        raise TimerError(f"the duration must be a length of time, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_text(value.strip().lower())
    else:
        raise TimerError(f"the duration must be a length of time like '8 minutes', not {value!r}")
    if not math.isfinite(seconds) or seconds < 1:
        raise TimerError("the duration must be at least one second")
    if seconds > MAX_DURATION_S:
        raise TimerError("a timer can run at most 24 hours: for longer, set an alarm")
    return seconds


def _duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    iso = _ISO.fullmatch(text)
    if iso and any(iso.groups()):
        h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        return h * 3600 + m * 60 + s
    rest = re.sub(r"\b(and|,)\b|,", " ", text)
    total, found = 0.0, False
    for number, unit in _PART.findall(rest):
        if unit not in _UNITS:
            raise TimerError(f"the duration {text!r} has a unit I do not know: {unit!r}")
        count = (
            0.5 if number.startswith("half") else 1.0 if number in ("a", "an") else float(number)
        )
        total += count * _UNITS[unit]
        found = True
    if not found or _PART.sub("", rest).strip():
        raise TimerError(f"the duration {text!r} is not a length of time like '8 minutes'")
    return total


def parse_clock(value: Any) -> tuple[int, int]:
    """(hour, minute) from "07:30", "7:30 pm", "7 am", "19h30", or an ISO date-time's time."""
    if not isinstance(value, str) or not value.strip():
        raise TimerError("the alarm needs a time of day like '07:30' or '7:30 pm'")
    text = value.strip().lower()
    if "t" in text and text[:4].isdigit():  # 2026-12-08T07:30[:00][+01:00]
        text = text.split("t", 1)[1][:5]
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise TimerError(f"{value!r} is not a time of day like '07:30' or '7:30 pm'")
    hour, minute = int(match[1]), int(match[2] or 0)
    meridiem = (match[4] or "").replace(".", "")
    if meridiem:
        if not 1 <= hour <= 12:
            raise TimerError(f"{value!r}: with am or pm the hour is 1 to 12")
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    if hour > 23 or minute > 59:
        raise TimerError(f"{value!r} is not a time of day (00:00 to 23:59)")
    return hour, minute


def next_clock(after: float, hour: int, minute: int) -> float:
    """The first local `hour:minute` after the instant `after` (the system time zone)."""
    local = datetime.datetime.fromtimestamp(after)  # naive local: days move by the calendar
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate.timestamp() <= after:  # a naive datetime's timestamp() is local, DST and all
        candidate += datetime.timedelta(days=1)
    return candidate.timestamp()


def normal_name(name: Any) -> str:
    if name is None:
        return ""
    if not isinstance(name, str):
        raise TimerError(f"the name must be text, not {name!r}")
    text = " ".join(name.split()).strip(" '\"")
    if len(text) > NAME_MAX:
        raise TimerError(f"the name is too long (at most {NAME_MAX} characters)")
    return text


def say_duration(seconds: float) -> str:
    """'8 minutes', '1 hour 30 minutes', '45 seconds' (seconds only under 10 minutes)."""
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    parts = []
    if h:
        parts.append(f"{h} hour{'s' * (h != 1)}")
    if m:
        parts.append(f"{m} minute{'s' * (m != 1)}")
    if s and total < 600 or total == 0:
        parts.append(f"{s} second{'s' * (s != 1)}")
    return " ".join(parts)


def say_clock(at: float, now: float) -> str:
    """'19:42', '07:30 tomorrow', '07:30 on Friday 11 December'."""
    local = datetime.datetime.fromtimestamp(at).astimezone()
    today = datetime.datetime.fromtimestamp(now).astimezone().date()
    days = (local.date() - today).days
    hm = local.strftime("%H:%M")
    if days == 0:
        return hm
    if days == 1:
        return f"{hm} tomorrow"
    return f"{hm} on {local.strftime('%A')} {local.day} {local.strftime('%B')}"


def title(t: Timer) -> str:
    """How a timer is named in a sentence: "timer 'pasta'", "alarm 'wake up'"."""
    return f"{t.kind} '{t.name}'"


class TimerBook:
    """The timers and alarms held, at most `limit`; names are unique, case-insensitively."""

    def __init__(self, timers: list[Timer] | None = None, limit: int = 10) -> None:
        self.limit = limit
        self._timers: list[Timer] = sorted(timers or [], key=lambda t: t.due)

    def all(self) -> list[Timer]:
        """Everything held, ringing ones included (what the file keeps)."""
        return list(self._timers)

    def pending(self) -> list[Timer]:
        """What has yet to ring, by due time."""
        return [t for t in self._timers if not t.ringing]

    def next_due(self) -> Timer | None:
        pending = self.pending()
        return pending[0] if pending else None

    def _room(self, name: str, kind: Kind) -> str:
        if len(self._timers) >= self.limit:
            raise TimerError(
                f"the box holds at most {self.limit} timers and alarms: cancel one first"
            )
        if not name:
            n = 1
            while self.find(f"{kind} {n}") is not None:
                n += 1
            return f"{kind} {n}"
        taken = self.find(name)
        if taken is not None:
            raise TimerError(f"a {taken.kind} is already named '{taken.name}': choose another name")
        return name

    def find(self, name: str) -> Timer | None:
        key = normal_name(name).casefold()
        return next((t for t in self._timers if t.name.casefold() == key), None)

    def _add(self, timer: Timer) -> Timer:
        self._timers = sorted([*self._timers, timer], key=lambda t: t.due)
        return timer

    def set_timer(self, now: float, duration: Any, name: Any = None) -> Timer:
        seconds = parse_duration(duration)
        label = self._room(normal_name(name), "timer")
        return self._add(Timer(label, "timer", now + seconds, now, duration_s=seconds))

    def set_alarm(self, now: float, clock: Any, name: Any = None) -> Timer:
        hour, minute = parse_clock(clock)
        label = self._room(normal_name(name), "alarm")
        due = next_clock(now, hour, minute)
        return self._add(Timer(label, "alarm", due, now, clock=f"{hour:02d}:{minute:02d}"))

    def cancel(self, name: Any = None) -> Timer:
        """Remove one yet to ring, by name, or the only one there is."""
        label = normal_name(name)
        pending = self.pending()
        names = ", ".join(f"'{t.name}'" for t in pending)
        if not pending:
            raise TimerError("no timers or alarms are set")
        if label:
            key = label.casefold()
            timer = next((t for t in pending if t.name.casefold() == key), None)
            if timer is None:
                raise TimerError(f"no timer or alarm is named '{label}'; set: {names}")
        elif len(pending) == 1:
            timer = pending[0]
        else:
            raise TimerError(f"{len(pending)} are set ({names}): say which one to cancel")
        self._timers.remove(timer)
        return timer

    def take_due(
        self,
        now: float,
        resume_within_s: float = 0.0,
        held: Callable[[Timer], bool] = lambda t: False,
    ) -> tuple[list[Timer], list[Timer]]:
        """What is due: (to ring, now marked ringing; missed, removed); `held` ones wait. A
        ring that a crash or a power cut ended (marked ringing on disk) rings again, unless it
        began more than `resume_within_s` (the ring limit) + MISSED_AFTER_S ago: missed then."""
        ring, missed, keep = [], [], []
        for t in self._timers:
            if t.due > now or (t.ringing and t.live) or (not t.ringing and held(t)):
                keep.append(t)
            elif now - t.due <= MISSED_AFTER_S + (resume_within_s if t.ringing else 0.0):
                ring.append(dataclasses.replace(t, ringing=True, live=True))
            else:
                missed.append(t)
        self._timers = sorted([*keep, *ring], key=lambda t: t.due)
        return ring, missed

    def finish(self, names: list[str]) -> None:
        """The ring of these ended: they are done."""
        self._timers = [t for t in self._timers if not (t.ringing and t.name in names)]

    def stepped(self, delta: float) -> None:
        """The wall clock jumped by `delta` s: move what this run set (see the module doc)."""
        moved = []
        for t in self._timers:
            if not t.live or t.ringing:
                moved.append(t)
            elif t.kind == "timer":
                moved.append(dataclasses.replace(t, due=t.due + delta, set_at=t.set_at + delta))
            else:
                assert t.clock is not None
                hour, minute = (int(p) for p in t.clock.split(":"))
                set_at = t.set_at + delta
                moved.append(dataclasses.replace(t, set_at=set_at,
                                                 due=next_clock(set_at, hour, minute)))  # fmt: skip
        self._timers = sorted(moved, key=lambda t: t.due)

    # --- sentences for the agent -----------------------------------------------------------

    @staticmethod
    def said_set(t: Timer, now: float) -> str:
        if t.kind == "timer":
            assert t.duration_s is not None
            return (
                f"{title(t)} set for {say_duration(t.duration_s)}, rings at {say_clock(t.due, now)}"
            )
        return f"{title(t)} set for {say_clock(t.due, now)}, in {say_duration(t.due - now)}"

    @staticmethod
    def said_cancelled(t: Timer, now: float) -> str:
        return f"{title(t)} cancelled; it had {say_duration(t.due - now)} to go"

    def said_list(self, now: float) -> str:
        pending = self.pending()
        if not pending:
            return "no timers or alarms are set"
        lines = [
            f"{title(t)} rings at {say_clock(t.due, now)}, in {say_duration(t.due - now)}"
            for t in pending
        ]
        count = len(lines)
        return f"{count} set: " + "; ".join(lines)
