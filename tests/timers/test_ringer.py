"""The daemon's timers on their own clocks: a due one rings until stopped or the limit, a missed
one is said once, alarms wait for a clock that can be trusted, a clock step moves what this run
set, and no acknowledged timer is lost or rung twice across crashes inside the atomic write."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebox import statefile
from voicebox.config import TimersConfig
from voicebox.timers import store
from voicebox.timers.book import Timer
from voicebox.timers.ringer import Timers, missed_text, ring_tone

T0 = 1_800_000_000.0


class Output:
    """Records what a ring plays (the daemon's announcer in real runs)."""

    def __init__(self, speaks: bool = True) -> None:
        self.speaks = speaks
        self.cuts = 0
        self.hushes = 0
        self.played: list[int] = []  # byte lengths
        self.texts: list[str] = []

    def cut(self) -> None:
        self.cuts += 1

    def play_now(self, pcm: bytes, rate: int) -> None:
        self.played.append(len(pcm))

    def hush(self) -> None:
        self.hushes += 1

    async def phrase(self, text: str) -> tuple[bytes, int] | None:
        self.texts.append(text)
        return (b"\x00\x00" * 1600, 16000) if self.speaks else None


class Clock:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0
        self.trusted = True

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def timers(tmp: Path, out: Output, clock: Clock, **cfg: float) -> Timers:
    return Timers(
        TimersConfig(**cfg),  # type: ignore[arg-type]
        tmp,
        out,
        now=lambda: clock.wall,
        monotonic=lambda: clock.mono,
        trusted=lambda: clock.trusted,
    )


async def until(predicate: object) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_due_timer_rings_with_its_name_until_stopped(tmp_path: Path) -> None:
    out, clock = Output(), Clock()
    t = timers(tmp_path, out, clock)
    t.book.set_timer(clock.wall, 5, "tea")
    t.changed()
    assert [x.name for x in store.load(tmp_path)] == ["tea"]
    clock.advance(4)
    await t._tick()
    assert not t.ringing
    clock.advance(1)
    await t._tick()
    assert [x.name for x in t.ringing] == ["tea"]
    (marked,) = store.load(tmp_path)  # marked ringing on disk before it is heard
    assert marked.name == "tea" and marked.ringing
    await until(lambda: out.texts == ["The tea timer."])
    assert out.cuts >= 1 and out.played[0] == len(ring_tone())
    assert t.snapshot()["ringing"] == ["tea"]
    assert t.stop("button")
    await until(lambda: not t.ringing)
    assert out.hushes >= 1 and not t.stop("button")
    assert store.load(tmp_path) == []  # the end of the ring is on disk: done


@pytest.mark.asyncio
async def test_a_ring_a_power_cut_ended_rings_again_at_start_within_its_limit(
    tmp_path: Path,
) -> None:
    store.save(tmp_path, [Timer("tea", "timer", T0 - 30, T0 - 90, duration_s=60.0, ringing=True),
                          Timer("old", "timer", T0 - 900, T0 - 960, duration_s=60.0,
                                ringing=True)])  # fmt: skip
    out, clock = Output(), Clock()
    t = timers(tmp_path, out, clock, ring_limit_s=120)
    await t._tick()
    assert [x.name for x in t.ringing] == ["tea"]  # old: its ring would be long over: missed
    t.stop("button")
    await until(lambda: not t.ringing)
    await until(lambda: any(x.startswith("While the box was off, timer 'old'") for x in out.texts))
    assert store.load(tmp_path) == []


@pytest.mark.asyncio
async def test_a_ring_nobody_stops_ends_at_the_limit_and_offline_rings_the_tone(
    tmp_path: Path,
) -> None:
    out, clock = Output(speaks=False), Clock()
    t = timers(tmp_path, out, clock, ring_limit_s=0.2)
    t.book.set_timer(clock.wall, 1)
    clock.advance(1)
    await t._tick()
    assert t.ringing
    await until(lambda: not t.ringing)
    assert out.played == [len(ring_tone())]  # the tone: no phrase could be had


@pytest.mark.asyncio
async def test_what_came_due_while_off_is_said_once(tmp_path: Path) -> None:
    store.save(tmp_path, [Timer("pasta", "timer", T0 - 3600, T0 - 4000, duration_s=400.0)])
    out, clock = Output(), Clock()
    t = timers(tmp_path, out, clock)
    await t._tick()
    await until(lambda: len(out.texts) == 1)
    assert out.texts[0] == missed_text(Timer("pasta", "timer", T0 - 3600, 0.0), T0)
    assert out.texts[0].startswith("While the box was off, timer 'pasta' went off at")
    assert not t.ringing and store.load(tmp_path) == []
    again = timers(tmp_path, Output(), clock)  # a restart: nothing left to say
    await again._tick()
    assert again.book.pending() == []


@pytest.mark.asyncio
async def test_alarms_wait_for_a_clock_that_can_be_trusted_timers_of_this_run_do_not(
    tmp_path: Path,
) -> None:
    out, clock = Output(), Clock()
    clock.trusted = False  # just booted, NTP not yet answered
    t = timers(tmp_path, out, clock)
    t.book.set_alarm(clock.wall - 30, "00:00", "never early")  # due by this clock
    t.book._timers = [
        x if x.kind != "alarm" else Timer(x.name, "alarm", clock.wall - 1, x.set_at, clock=x.clock)
        for x in t.book.pending()
    ]
    t.book.set_timer(clock.wall - 5, 5, "eggs")
    await t._tick()
    assert [x.name for x in t.ringing] == ["eggs"]  # measured in this run: rings
    assert t.snapshot()["held"] and [x.name for x in t.book.pending()] == ["never early"]
    t.stop("button")
    await until(lambda: not t.ringing)
    clock.trusted = True
    await t._tick()
    assert [x.name for x in t.ringing] == ["never early"]
    t.stop("button")
    await until(lambda: not t.ringing)


@pytest.mark.asyncio
async def test_a_clock_step_does_not_make_a_timer_ring_early(tmp_path: Path) -> None:
    out, clock = Output(), Clock()
    t = timers(tmp_path, out, clock)
    t.book.set_timer(clock.wall, 600, "tea")
    t.changed()
    clock.wall += 7200  # NTP steps the clock two hours forward; no time passed
    clock.mono += 0.25
    await t._tick()
    assert not t.ringing
    (tea,) = store.load(tmp_path)
    assert tea.due == pytest.approx(T0 + 7200 + 600)  # the step was kept on disk too
    clock.advance(599)
    await t._tick()
    assert not t.ringing
    clock.advance(1.5)
    await t._tick()
    assert [x.name for x in t.ringing] == ["tea"]
    t.stop("button")
    await until(lambda: not t.ringing)


class Crash(BaseException):
    """The process dies here."""


class Counting(Timers):
    """Timers whose ring ends as soon as it starts (the order in _tick and _ended is real)."""

    started: list[str]
    done: set[str]

    def _ring(self, due: list[Timer]) -> None:
        names = [t.name for t in due]
        assert not set(names) & self.done, f"{names} rang again after its end was on disk"
        self.started.extend(names)
        self._ended(names, "stopped")


ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(1, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.integers(1, 20)),
    ),
    max_size=25,
)
crashes = st.lists(st.sampled_from(["none", "none", "before_replace", "after_replace"]),
                   min_size=40, max_size=40)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops, plan=crashes)
def test_no_acknowledged_timer_is_lost_or_rung_twice_across_crashes(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], plan: list[str]
) -> None:
    """A crash before or after the rename inside each atomic write (the commit point), then a
    restart from what is on disk: every timer the agent was told is set rings, or is
    cancelled; none rings again once the end of its ring is on disk."""
    state = tmp_path_factory.mktemp("state")
    clock = Clock()
    saves = iter(plan)
    real_replace = os.replace
    on_disk: dict[str, bool] = {}  # name -> marked ringing, as the file says now
    done: set[str] = set()  # their ring's end is on disk
    dropped: set[str] = set()  # gone from the disk without ringing (cancelled)
    started: list[str] = []

    def replace(src: str, dst: str) -> None:  # statefile.write_atomic's commit point
        how = next(saves, "none")
        if how == "before_replace":
            raise Crash
        real_replace(src, dst)
        now = {t.name: t.ringing for t in store.load(state)}
        for name, ringing in on_disk.items():
            if name not in now:
                (done if ringing else dropped).add(name)
        on_disk.clear()
        on_disk.update(now)
        if how == "after_replace":
            raise Crash

    def boot() -> Counting:
        t = Counting(TimersConfig(max=100), state, Output(), now=lambda: clock.wall,
                     monotonic=lambda: clock.mono, trusted=lambda: True)  # fmt: skip
        t.started, t.done = started, done
        return t

    def settle(t: Counting) -> Counting:
        """Tick until a tick completes, booting again after each crash."""
        while True:
            try:
                asyncio.run(t._tick())
                return t
            except Crash:
                t = boot()

    acknowledged: set[str] = set()  # the tool answered: the agent told the user it is set
    statefile.os.replace = replace  # type: ignore[assignment]
    try:
        t = boot()
        for n, (op, arg) in enumerate(ops):
            try:
                if op == "set":
                    t.book.set_timer(clock.wall, arg, f"t{n}")
                    t.changed()
                    acknowledged.add(f"t{n}")
                elif op == "cancel" and t.book.pending():
                    pending = t.book.pending()
                    t.book.cancel(pending[arg % len(pending)].name)
                    t.changed()
                elif op == "advance":
                    clock.advance(arg)
                    asyncio.run(t._tick())
            except Crash:
                t = settle(boot())  # restarted by systemd: only the disk is left
        clock.advance(60)
        t = settle(t)
    finally:
        statefile.os.replace = real_replace  # type: ignore[assignment]
    assert not t.book.all() and not on_disk  # everything came due and ended
    assert acknowledged <= done | dropped  # none the user was told of is lost
    assert done <= set(started)  # what is done rang
    assert not done & dropped
