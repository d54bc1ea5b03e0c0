"""What the conversations cost: minutes with a session open, per day and per month, persisted.

The service bills an agent by connection time, silences over QUIET_AFTER_S at a reduced rate.
`UsageLedger.add(when, seconds, quiet)` counts `seconds` of open session on the local date of
`when`, and in `quiet_s` too when neither side had spoken for QUIET_AFTER_S (the part billed at
the silence rate). `<state_dir>/usage.json` keeps the last KEEP_DAYS days, written atomically;
an unreadable file is logged and started afresh (a count lost, never a crash). `DailyLimit` is the
pure rule of `conversation.daily_limit_minutes`: over the limit nothing opens until the next
local midnight, unless the button asks for one conversation more.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebox.logs import event
from voicebox.statefile import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "usage.json"
QUIET_AFTER_S = 10.0  # silence longer than this is billed at the reduced rate
KEEP_DAYS = 400


@dataclass
class Day:
    open_s: float = 0.0  # a session open
    quiet_s: float = 0.0  # of it, more than QUIET_AFTER_S without speech


SAVE_EVERY_S = 60.0


class UsageLedger:
    """Open-session seconds per local day; `load`/`save` to the state directory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.days: dict[str, Day] = {}
        self._counted_at: float | None = None  # monotonic time counted up to
        self._saved_at: float | None = None

    def tick(self, now: float, wall: dt.datetime, session_open: bool, quiet: bool) -> None:
        """Count the (monotonic) time since the last tick if a session was open; save every
        SAVE_EVERY_S, so a power cut loses at most that much."""
        if self._counted_at is not None and session_open:
            self.add(wall, now - self._counted_at, quiet)
        self._counted_at = now
        if self._saved_at is None:
            self._saved_at = now
        elif now - self._saved_at >= SAVE_EVERY_S:
            self._saved_at = now
            self.save()

    @classmethod
    def load(cls, state_dir: str | Path) -> UsageLedger:
        ledger = cls(Path(state_dir) / FILE_NAME)
        assert ledger.path is not None
        try:
            data = json.loads(ledger.path.read_text(encoding="utf-8"))
            for day, value in data.get("days", {}).items():
                dt.date.fromisoformat(day)
                ledger.days[day] = Day(float(value["open_s"]), float(value["quiet_s"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            event(log, "usage.unreadable", logging.WARNING, path=ledger.path, error=str(exc))
            ledger.days = {}
        return ledger

    def add(self, when: dt.datetime, seconds: float, quiet: bool) -> None:
        if seconds <= 0:
            return
        day = self.days.setdefault(when.date().isoformat(), Day())
        day.open_s += seconds
        if quiet:
            day.quiet_s += seconds

    def day(self, date: dt.date) -> Day:
        return self.days.get(date.isoformat(), Day())

    def month(self, date: dt.date) -> Day:
        prefix = date.isoformat()[:7]
        total = Day()
        for key, day in self.days.items():
            if key.startswith(prefix):
                total.open_s += day.open_s
                total.quiet_s += day.quiet_s
        return total

    def summary(self, now: dt.datetime) -> dict[str, Any]:
        today, month = self.day(now.date()), self.month(now.date())
        return {
            "today_minutes": round(today.open_s / 60, 2),
            "today_quiet_minutes": round(today.quiet_s / 60, 2),
            "month_minutes": round(month.open_s / 60, 2),
            "month_quiet_minutes": round(month.quiet_s / 60, 2),
        }

    def save(self) -> None:
        """Write the file atomically (the oldest days beyond KEEP_DAYS dropped); never raises."""
        if self.path is None:
            return
        for key in sorted(self.days)[:-KEEP_DAYS]:
            del self.days[key]
        data = {
            "days": {
                k: {"open_s": round(d.open_s, 1), "quiet_s": round(d.quiet_s, 1)}
                for k, d in sorted(self.days.items())
            }
        }
        try:
            write_atomic(self.path, json.dumps(data))
        except OSError as exc:
            event(log, "usage.not_stored", logging.WARNING, path=self.path, error=str(exc))


class DailyLimit:
    """conversation.daily_limit_minutes: reached, and whether one more conversation is allowed."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self._override_day: str | None = None  # the button asked for one more, that day

    def reached(self, ledger: UsageLedger, now: dt.datetime) -> bool:
        if self.minutes is None:
            return False
        return ledger.day(now.date()).open_s >= self.minutes * 60

    def allow_one(self, now: dt.datetime) -> None:
        """The button: one conversation more today, however long it lasts."""
        self._override_day = now.date().isoformat()

    def overridden(self, now: dt.datetime) -> bool:
        return self._override_day == now.date().isoformat()

    def end_override(self) -> None:
        self._override_day = None

    def blocks(self, ledger: UsageLedger, now: dt.datetime) -> bool:
        """True when nothing may open (or stay open) now."""
        return self.reached(ledger, now) and not self.overridden(now)
