"""Replay end to end: what was said into a half-open link reaches the next session."""

from __future__ import annotations

import pytest

from tests.convai.rig import rig
from voicebox.simulator import bursts
from voicebox.simulator.server import SimConfig
from voicebox.simulator.voice import speech_like


@pytest.mark.asyncio
async def test_speech_sent_into_a_half_open_link_is_replayed_on_the_next_session() -> None:
    sim = SimConfig(first_message="", ping_interval_s=0.5, count_bursts=True)
    async with rig(sim, conversation__resume_buffer_s=6.0) as r:
        first = await r.sim.wait_connection(1)
        log = r.sim.bursts
        assert log is not None
        burst = bursts.encode_burst(7, speech_like(1.2, 16000, level=0.6))
        r._speech.append(burst)
        await r.sim.wait_for(lambda: any(a[1] == 1 and a[4] >= 10 for a in log.arrivals))
        await r.sim.inject("1:silent", 1)  # stops reading: the rest of the burst goes nowhere
        await r.sim.wait_connection(2, timeout=15)
        everything = set(range(bursts.positions(len(burst))))

        def heard() -> set[int]:
            return {p for _, _, _, lo, hi, _ in log.arrivals for p in range(lo, hi + 1)}

        # The replay is paced by the link's pongs: wait until it is all in (or time out).
        await r.sim.wait_for(lambda: heard() == everything, timeout=10)
        assert first.closed or r.logs.events("link.half_open")
        got: dict[int, set[int]] = {}
        for _, conn, k, lo, hi, _ in log.arrivals:
            assert k == 7
            spans = got.setdefault(conn, set())
            assert not spans & set(range(lo, hi + 1)), "a frame reached one session twice"
            spans.update(range(lo, hi + 1))
        assert got.get(1, set()) != everything  # the dead link did not get it all ...
        assert got[1] | got.get(2, set()) == everything  # ... the next session got the rest
        [replay] = r.logs.events("mic.replayed")
        assert float(replay["REPLAYED_S"]) > 0
        assert r.sup.snapshot()["counters"]["replays"] == 1


@pytest.mark.asyncio
async def test_a_turn_already_transcribed_is_not_replayed_after_a_1012() -> None:
    """The service took the user's turn (user_transcript) and then restarted (1012): the next
    session gets no fragment of that turn to answer again."""
    sim = SimConfig(first_message="", ping_interval_s=30.0, interruptions=False)
    async with rig(sim, conversation__resume_buffer_s=6.0) as r:
        first = await r.sim.wait_connection(1)
        r.say(1.2)
        await r.sim.wait_for(lambda: len(first.turns) >= 1, timeout=10)
        await r.sim.inject("1:close:1012", 1)
        second = await r.sim.wait_connection(2, timeout=15)
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 40, timeout=10)
        assert second.turns == []  # nothing of the first turn spoken again
        assert len(first.turns) == 1
