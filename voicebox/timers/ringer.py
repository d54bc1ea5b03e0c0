"""Timers in the running daemon: the book kept on disk, the clock watched, due ones rung.

A ring: the agent's reply is cut (a barge-in: the conversation stays open), then a cached tone
pattern and the timer's name (a cached or live phrase; the tone alone when neither can be had),
again every RING_CYCLE_S, at the current volume, until `stop()` (a button press, the wake word,
"stop" said in an open conversation, `voicebox timers stop`, cancel_timer) or
`timers.ring_limit_s`. Offline it rings the same: nothing in it needs the network. Several due at
once ring as one, naming each. What came due while the box was off is said once ("missed") after
start, and removed from the file before it is said, so a crash cannot say it twice.

The clock: every tick compares the wall clock with the monotonic one; a jump of more than
STEP_S is a step (book.TimerBook.stepped). Alarms and timers loaded from disk wait while
`clock.trusted()` is false (see voicebox/timers/clock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voicebox.config import TimersConfig
from voicebox.logs import event
from voicebox.timers import clock, store
from voicebox.timers.book import Timer, TimerBook, normal_name, say_clock, title

log = logging.getLogger(__name__)

TICK_S = 0.25
STEP_S = 2.0  # wall minus monotonic moving more than this between ticks: the clock was stepped
RING_CYCLE_S = 4.0
RATE = 16000


class RingOutput(Protocol):
    """Where a ring is heard (the daemon's announcer)."""

    def cut(self) -> None:
        """Cut the agent's reply (a barge-in), or what is playing."""

    def play_now(self, pcm: bytes, rate: int) -> None:
        """Queue PCM (int16) at `rate` at once."""

    def hush(self) -> None:
        """Drop what is queued (the rest of a ring)."""

    async def phrase(self, text: str) -> tuple[bytes, int] | None:
        """The text as PCM from the cache or live synthesis, None when neither works."""


def ring_tone(rate: int = RATE) -> bytes:
    """Four short 988 Hz beeps, twice, with a pause: about 1.9 s (int16 PCM)."""
    n = int(0.08 * rate)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.004 * rate))
    beep = (12000 * np.sin(2 * np.pi * 988.0 * t) * ramp).astype(np.int16)
    gap = np.zeros(int(0.07 * rate), dtype=np.int16)
    group = np.concatenate([beep, gap] * 4)
    pause = np.zeros(int(0.35 * rate), dtype=np.int16)
    return np.concatenate([group, pause, group, pause]).astype("<i2").tobytes()


def ring_text(timers: list[Timer]) -> str:
    names = " and ".join(f"the {t.name} {t.kind}" if not t.name.startswith(t.kind) else t.name
                         for t in timers)  # fmt: skip
    return f"{names[0].upper()}{names[1:]}."


def missed_text(t: Timer, now: float) -> str:
    return f"While the box was off, {title(t)} went off at {say_clock(t.due, now)}."


class Timers:
    """The daemon's timers: the book, the tick loop, the ring."""

    def __init__(
        self,
        cfg: TimersConfig,
        state_dir: str | Path,
        output: RingOutput,
        on_change: Callable[[], None] = lambda: None,
        *,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        trusted: Callable[[], bool] = clock.trusted,
    ) -> None:
        """now, monotonic, trusted: the wall clock, the monotonic one, clock.trusted."""
        self.cfg = cfg
        self.state_dir = state_dir
        self.output = output
        self.on_change = on_change  # the ring started or stopped, the list changed
        self.book = TimerBook(store.load(state_dir), cfg.max)
        self.ringing: list[Timer] = []
        self._stop_ring = asyncio.Event()
        self._ring_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._tone = ring_tone()
        self.now, self._monotonic, self._trusted = now, monotonic, trusted
        self._offset = now() - monotonic()
        self._missed_said: list[Timer] = []
        self._held = False

    # --- what the tools and the socket ask -------------------------------------------------

    def changed(self) -> None:
        """The book changed: keep it, and let the loop look again."""
        store.save(self.state_dir, self.book.all())
        self._wake.set()
        self.on_change()

    def stop(self, reason: str) -> bool:
        """Stop the ring (True if one was ringing)."""
        if not self.ringing:
            return False
        self._stop_ring.set()
        event(log, "timers.ring_stopped", reason=reason, names=[t.name for t in self.ringing])
        return True

    def cancel(self, name: Any, source: str) -> str:
        """Stop the ring (its name, or none given) or cancel one held: a sentence; TimerError."""
        ringing = self.ringing
        if ringing and (not name or any(t.name.casefold() == normal_name(name).casefold()
                                        for t in ringing)):  # fmt: skip
            self.stop(source)
            return f"{' and '.join(title(t) for t in ringing)} stopped ringing"
        now = self.now()
        t = self.book.cancel(name)
        event(log, "timers.cancelled", name=t.name, kind=t.kind, source=source)
        self.changed()
        return TimerBook.said_cancelled(t, now)

    def snapshot(self) -> dict[str, Any]:
        now = self.now()
        nxt = self.book.next_due()
        return {
            "count": len(self.book.pending()),
            "next": None
            if nxt is None
            else {
                "name": nxt.name,
                "kind": nxt.kind,
                "due": say_clock(nxt.due, now),
                "in_s": round(nxt.due - now),
            },  # fmt: skip
            "ringing": [t.name for t in self.ringing],
            "held": self._held,
        }

    def listing(self) -> list[dict[str, Any]]:
        now = self.now()
        return [
            {"name": t.name, "kind": t.kind, "due": say_clock(t.due, now),
             "in_s": round(t.due - now), "clock": t.clock, "duration_s": t.duration_s}
            for t in self.book.pending()
        ]  # fmt: skip

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until cancelled; a failing tick is logged and the loop goes on."""
        try:
            while True:
                try:
                    await self._tick()
                except Exception as exc:  # a bug in one tick must not end the timers
                    event(log, "timers.tick_failed", logging.ERROR, error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            if self._ring_task is not None:
                self._ring_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ring_task

    async def _tick(self) -> None:
        now = self.now()
        offset = now - self._monotonic()
        delta, self._offset = offset - self._offset, offset
        if abs(delta) > STEP_S:
            self.book.stepped(delta)
            event(log, "timers.clock_stepped", delta_s=round(delta, 1))
            self.changed()
        doubtful = [
            t for t in self.book.pending() if t.due <= now and (t.kind == "alarm" or not t.live)
        ]
        trusted = not doubtful or self._trusted()  # asked only when it matters

        def held(t: Timer) -> bool:  # set aside while the clock may be wrong
            return not trusted and (t.kind == "alarm" or not t.live)

        waiting = [t.name for t in self.book.pending() if t.due <= now and held(t)]
        if bool(waiting) != self._held:
            self._held = bool(waiting)
            event(log, "timers.held" if waiting else "timers.released",
                  reason="clock_unsynchronized", names=waiting)  # fmt: skip
        ring, missed = self.book.take_due(now, self.cfg.ring_limit_s, held)
        if not ring and not missed:
            return
        self.changed()  # on disk (ringing, or gone) before anything is heard
        for t in missed:
            event(log, "timers.missed", name=t.name, kind=t.kind, due=say_clock(t.due, now))
            self._missed_said.append(t)
        if ring:
            self._ring(ring)
        elif missed and (self._ring_task is None or self._ring_task.done()):
            self._ring_task = asyncio.create_task(self._say_missed())

    def _ring(self, timers: list[Timer]) -> None:
        for t in timers:
            event(log, "timers.ringing", name=t.name, kind=t.kind)
        if self._ring_task is not None and not self._ring_task.done():
            self.ringing.extend(timers)  # one ring goes on, naming the newcomers too
            return
        self.ringing = list(timers)
        self._stop_ring.clear()
        self._ring_task = asyncio.create_task(self._ring_until_stopped())
        self.on_change()

    async def _ring_until_stopped(self) -> None:
        started = time.monotonic()
        reason = "limit"
        try:
            while time.monotonic() - started < self.cfg.ring_limit_s:
                self.output.cut()
                self.output.play_now(self._tone, RATE)
                spoken = await self.output.phrase(ring_text(self.ringing))
                if spoken is not None and not self._stop_ring.is_set():
                    self.output.play_now(*spoken)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RING_CYCLE_S + (len(spoken[0]) / 2 / spoken[1]
                                                              if spoken else 0.0)):  # fmt: skip
                        await self._stop_ring.wait()
                if self._stop_ring.is_set():
                    reason = "stopped"
                    break
        finally:
            self.output.hush()
        # Cancelled (the daemon stopping), it stays marked ringing and rings again at the next
        # start, within the limit.
        self._ended([t.name for t in self.ringing], reason)
        if self._missed_said:
            await self._say_missed()

    def _ended(self, names: list[str], reason: str) -> None:
        """A ring ended (a stop or the limit): its timers are done, on disk."""
        if reason == "limit":
            event(log, "timers.ring_stopped", reason="limit", names=names)
        self.ringing = []
        self.book.finish(names)
        self.changed()

    async def _say_missed(self) -> None:
        while self._missed_said:
            t = self._missed_said.pop(0)
            spoken = await self.output.phrase(missed_text(t, self.now()))
            self.output.play_now(*spoken) if spoken else self.output.play_now(self._tone, RATE)
