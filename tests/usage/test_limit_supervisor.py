"""The daily limit in the supervisor: what is open closes, nothing opens until it is lifted."""

from __future__ import annotations

import asyncio

import pytest

from tests.convai.rig import rig
from voicebox.simulator.server import SimConfig
from voicebox.state import State

pytestmark = pytest.mark.asyncio


async def test_the_limit_closes_always_on_refuses_a_wake_and_a_press_and_lifting_reopens() -> None:
    async with rig(SimConfig(first_message="")) as r:
        first = await r.sim.wait_connection(1)
        await r.wait(lambda: r.sup.session_open)
        r.sup.set_limited(True)
        await r.sim.wait_for(lambda: first.closed)
        assert (first.close_code, first.closed_by) == (1000, "client")
        await r.wait(lambda: r.states[-1] == (State.IDLE, {"reason": "daily_limit"}))
        assert not r.sup.session_open and r.sup.quiet_for_s() == 0.0
        assert r.sup.wake(r.sup.last_seq) == "limited"
        r.sup.press()
        r.say(0.5)
        await asyncio.sleep(1.0)
        assert len(r.sim.connections) == 1  # nothing reopened, always_on included
        r.sup.set_limited(False)
        second = await r.sim.wait_connection(2)  # always_on opens again
        await r.sim.wait_for(lambda: second.user_audio_chunks > 5)


async def test_quiet_time_counts_from_the_last_speech_of_either_side() -> None:
    async with rig(SimConfig(first_message="")) as r:
        await r.sim.wait_connection(1)
        await r.wait(lambda: r.sup.session_open)
        await asyncio.sleep(0.6)
        assert r.sup.quiet_for_s() >= 0.5
        r.say(1.0)
        await r.wait(lambda: r.sup.quiet_for_s() < 0.3)
