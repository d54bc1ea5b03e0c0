"""The supervisor in wake_word mode: a wake opens a hands-free conversation, what follows the word
reaches it whole however slow the handshake, the word itself is not sent, and it goes idle."""

from __future__ import annotations

import asyncio

import pytest

from tests.convai.rig import rig
from voicebox.simulator import bursts
from voicebox.simulator.server import SimConfig
from voicebox.simulator.voice import speech_like
from voicebox.state import State

pytestmark = pytest.mark.asyncio

WAKE = {"conversation__mode": "wake_word", "conversation__idle_close_s": 1.5}


def _positions(log: bursts.BurstLog, number: int, conn: int | None = None) -> set[int]:
    return {
        p
        for _, c, k, lo, hi, _ in log.arrivals
        if k == number and (conn is None or c == conn)
        for p in range(lo, hi + 1)
    }


async def test_a_wake_sends_what_follows_the_word_not_the_word_and_then_goes_idle() -> None:
    # A handshake slower than the question is long: it all waits in the pre-roll and buffer.
    sim = SimConfig(first_message="", metadata_delay_s=1.5, count_bursts=True)
    async with rig(sim, **WAKE) as r:
        await asyncio.sleep(0.3)
        assert r.sim.connections == [] and r.sup.state is State.IDLE  # nothing opened, nothing sent
        word = bursts.encode_burst(1, speech_like(0.8, 16000, level=0.6))
        question = bursts.encode_burst(2, speech_like(1.2, 16000, level=0.6))
        r._speech += [word, question]
        # The detector fires at the word's end: here, when the mic has taken the word's chunks.
        chunks = len(word) // 320
        start = r.sup.last_seq
        await r.wait(lambda: r.sup.last_seq >= start + chunks)
        assert r.sup.wake(start + chunks) == "opened"
        first = await r.sim.wait_connection(1, timeout=10)
        # The box shows listening at once, while the session opens behind it.
        assert r.states[-1] == (State.LISTENING, {"reason": "wake_word"})
        assert State.CONNECTING not in r.state_names()
        log = r.sim.bursts
        assert log is not None
        everything = set(range(bursts.positions(len(question))))
        await r.sim.wait_for(lambda: _positions(log, 2) == everything, timeout=10)
        assert _positions(log, 1) == set(), "the wake word itself was sent"
        # No speech for idle_close_s: the conversation closes and the box is idle again.
        await r.sim.wait_for(lambda: first.closed, timeout=15)
        await r.wait_state(State.IDLE)
        assert first.close_reason == "idle"
        assert r.sup.snapshot()["counters"]["wakes"] == 1


async def test_the_wake_word_while_the_agent_speaks_is_a_barge_in() -> None:
    sim = SimConfig(first_message="Hello there, this is a long greeting for you to cut.")
    async with rig(sim, **WAKE) as r:
        r.sup.wake(r.sup.last_seq)
        await r.sim.wait_connection(1)
        await r.wait(lambda: r.audio.playing)
        assert r.sup.wake(r.sup.last_seq) == "barge_in"
        assert r.sup.snapshot()["counters"]["barge_ins"] == 1
        await r.wait(lambda: not r.audio.playing)
        assert r.sup.wake(r.sup.last_seq) == "ignored"  # a conversation is open already


async def test_the_button_in_wake_word_mode_starts_and_ends_a_conversation() -> None:
    async with rig(SimConfig(first_message=""), **WAKE) as r:
        r.sup.toggle()
        first = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        r.sup.release()  # hands-free: a release does not gate the mic
        await r.sim.wait_for(lambda: first.user_audio_chunks > 10)
        r.sup.toggle()  # the agent silent: the press ends it
        await r.sim.wait_for(lambda: first.closed)
        await r.wait_state(State.IDLE)
        assert first.closed_by == "client"
