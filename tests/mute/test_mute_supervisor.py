"""The privacy mute in the supervisor: at every state it closes what is open and sends nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.convai.rig import rig
from voicebox.simulator.server import SimConfig
from voicebox.simulator.uplink import SlowUplink
from voicebox.state import State

pytestmark = pytest.mark.asyncio


async def test_muted_while_talking_closes_the_session_and_sends_nothing_more() -> None:
    async with rig(SimConfig(first_message="Hello, a greeting that is still playing.")) as r:
        first = await r.sim.wait_connection(1)
        await r.wait(lambda: r.audio.playing)
        assert r.sup.set_muted(True) and not r.sup.set_muted(True)
        await r.sim.wait_for(lambda: first.closed)
        await r.wait_state(State.MUTED)
        assert not r.audio.playing  # the agent was cut mid-sentence
        heard = first.user_audio_chunks
        r.say(1.0)
        await asyncio.sleep(1.5)  # always_on: nothing reopens, nothing is sent or kept
        assert len(r.sim.connections) == 1 and first.user_audio_chunks == heard
        assert r.sup.wake(r.sup.last_seq) == "ignored"
        r.sup.press()
        await asyncio.sleep(0.3)
        assert len(r.sim.connections) == 1 and r.sup.state is State.MUTED
        assert r.sup.set_muted(False)
        second = await r.sim.wait_connection(2)  # always_on again
        await r.sim.wait_for(lambda: second.user_audio_chunks > 5)
        assert second.turns == []  # nothing said while muted was kept for it


async def test_muted_while_reconnecting_stops_trying() -> None:
    up = SlowUplink("127.0.0.1", 0, None)
    async with rig(SimConfig(first_message=""), uplink=up) as r:
        await r.sim.wait_connection(1)
        up.down(60.0)  # the network is gone: reconnecting
        await r.wait_state(State.RECONNECTING)
        r.sup.set_muted(True)
        await r.wait_state(State.MUTED)
        tries = up.connections
        await asyncio.sleep(1.0)
        assert up.connections == tries and r.sup.state is State.MUTED


async def test_muted_at_idle_a_press_opens_nothing() -> None:
    async with rig(SimConfig(first_message=""), conversation__mode="push_to_talk") as r:
        r.sup.set_muted(True)
        await r.wait_state(State.MUTED)
        r.sup.press()
        r.say(0.5)
        await asyncio.sleep(1.0)
        assert r.sim.connections == [] and r.sup.snapshot()["muted"] is True
