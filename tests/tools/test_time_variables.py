"""The box's time as dynamic variables: sent in each session's initiation, read from the clock as
that session opens (a reconnect and a duration-cap restart get their own time), and a configured
variable of the same name wins."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from tests.convai.rig import rig
from voicebox.convai.tools import local_now, time_variables
from voicebox.simulator.faults import parse_fault
from voicebox.simulator.server import SimConfig

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


class Clock:
    """A wall clock that moves on an hour each time it is read."""

    def __init__(self) -> None:
        self.reads: list[datetime.datetime] = []

    def __call__(self) -> datetime.datetime:
        now = datetime.datetime(2031, 7, 1, 8, 30, tzinfo=BERLIN)
        now += datetime.timedelta(hours=len(self.reads))
        self.reads.append(now)
        return now


def test_the_variables_name_the_time_and_the_zone() -> None:
    now = datetime.datetime(2031, 12, 24, 18, 5, tzinfo=BERLIN)
    assert time_variables(now) == {
        "local_time": "Wednesday 24 December 2031, 18:05",
        "time_zone": "Europe/Berlin",
    }
    fixed = datetime.datetime(
        2031, 1, 2, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=5))
    )
    assert time_variables(fixed)["time_zone"] == "UTC+05:00"
    assert local_now().tzinfo is not None


@pytest.mark.asyncio
async def test_each_session_is_told_the_time_it_opened_and_config_wins() -> None:
    # connection 1 is dropped (1012: a reconnect), connection 2 reaches the duration cap (a
    # restart): each initiation carries the clock as read for it
    sim = SimConfig(
        max_duration_s=1.5,
        faults=(parse_fault("1:close:1012:0.3"),),
        first_message="",
        ping_interval_s=0.3,
    )
    clock = Clock()
    async with rig(
        sim,
        clock=clock,
        conversation__reconnect__initial_s=0.05,
        agent__dynamic_variables={"time_zone": "kitchen time", "room": "kitchen"},
    ) as r:
        third = await r.sim.wait_connection(3, timeout=15)
        await r.sim.wait_for(lambda: third.initiation is not None, timeout=5)
        sent = []
        for n in (1, 2, 3):
            init = r.sim.connection(n).initiation
            assert init is not None
            sent.append(init.dynamic_variables)
        classes = [e["CLASS"] for e in r.logs.events("session.closed")]
    assert classes[:2] == ["transient", "duration_cap"]
    assert [v["local_time"] for v in sent] == [
        time_variables(t)["local_time"] for t in clock.reads[:3]
    ]
    assert sent[0]["local_time"] == "Tuesday 01 July 2031, 08:30"
    assert sent[2]["local_time"] == "Tuesday 01 July 2031, 10:30"
    assert all(v["time_zone"] == "kitchen time" and v["room"] == "kitchen" for v in sent)


@pytest.mark.asyncio
async def test_the_box_clock_arrives_current() -> None:
    before = time_variables(local_now())
    async with rig(SimConfig(first_message="", ping_interval_s=0.3)) as r:
        first = await r.sim.wait_connection(1)
        await r.sim.wait_for(lambda: first.initiation is not None)
        after = time_variables(local_now())
        assert first.initiation is not None
        sent = first.initiation.dynamic_variables
    assert sent["local_time"] in (before["local_time"], after["local_time"])
    assert sent["time_zone"] == after["time_zone"]
