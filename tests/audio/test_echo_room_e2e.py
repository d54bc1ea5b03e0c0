"""Hands-free in the simulated room, end to end: the real AudioEngine on the room backend, the
Supervisor, and the simulator (its energy VAD decides what counts as the user speaking).

With processing off the agent hears itself (the control: the room is real); with it on, it does
not, and the user's voice still barges in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from voicebox.audio.echo.processor import library_available, processing_settings
from voicebox.audio.engine import AudioEngine
from voicebox.audio.room import RoomSource
from voicebox.config import Config, with_changes
from voicebox.convai.supervisor import Supervisor
from voicebox.convai.tools import builtin_tools
from voicebox.simulator.server import SimConfig, SimConnection, Simulator
from voicebox.simulator.voice import speech_like

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not library_available(), reason="pywebrtc-audio is not installed (make bootstrap does it)"
    ),
]
RATE = 16000
# The agent's voice as wide as a voice (harmonics to about 3.6 kHz): a buzz under 1 kHz trains
# AEC3's filter on a few bands only, and each pitch glide then leaks ~40 ms of echo.
VOICE_HARMONICS = 20
FIRST = "Hello, I am the agent in the room, and I will keep talking for a little while now."


class Voice:
    """The user in the room: silence until told to say something (a WAV reader's interface)."""

    nframes = 0

    def __init__(self) -> None:
        self._queue = np.zeros(0, dtype=np.int16)
        self.said = 0

    def say(self, seconds: float, level: float = 0.3) -> None:
        self.said += 1
        burst = speech_like(seconds, RATE, f0=110.0 + 10 * self.said, level=level)
        self._queue = np.concatenate((self._queue, burst))

    def read_into(self, out: np.ndarray) -> int:  # type: ignore[type-arg]
        n = min(len(out), len(self._queue))
        out[:n] = self._queue[:n]
        out[n:] = 0
        self._queue = self._queue[n:]
        return len(out)

    def rewind(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Room:
    sim: Simulator
    engine: AudioEngine
    voice: Voice
    conn: SimConnection

    async def until(self, cond: object, timeout: float = 15.0) -> None:
        await self.sim.wait_for(cond, timeout=timeout)  # type: ignore[arg-type]

    async def agent_speaking(self, timeout: float = 15.0) -> None:
        await self.until(lambda: self.engine.playing, timeout)

    async def agent_quiet(self, timeout: float = 15.0) -> None:
        await self.until(lambda: not self.engine.playing, timeout)


@contextlib.asynccontextmanager
async def room(tmp_path: Path, echo_cancellation: str, **changes: object) -> AsyncIterator[Room]:
    with wave.open(str(tmp_path / "silence.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"\0\0" * RATE)
    sim = Simulator(
        SimConfig(
            first_message=FIRST,
            ping_interval_s=0.5,
            reply_delay_s=0.1,
            voice_harmonics=VOICE_HARMONICS,
        )
    )
    await sim.start()
    cfg: Config = with_changes(
        Config(),
        **{
            "agent.agent_id": "agent_room",
            "agent.api_base": sim.url,
            "conversation.mode": "always_on",
            "audio.input.backend": "room",
            "audio.input.path": str(tmp_path / "silence.wav"),
            "audio.output.backend": "file",
            "audio.output.path": str(tmp_path / "speaker.wav"),
            "audio.processing.echo_cancellation": echo_cancellation,
            **changes,
        },
    )
    engine = AudioEngine(cfg.audio, processing=processing_settings(cfg))
    sup = Supervisor(cfg, engine, None, builtin_tools(engine), lambda s, f: None)
    await engine.start(sup.on_mic_chunk)
    source = engine._input
    assert isinstance(source, RoomSource)
    voice = Voice()
    source.reader = voice  # the test speaks into the room on cue
    runner = asyncio.create_task(sup.run())
    try:
        conn = await sim.wait_connection(1)
        yield Room(sim, engine, voice, conn)
    finally:
        await sup.stop()
        await runner
        await engine.stop()
        await sim.stop()


@pytest.mark.asyncio
async def test_without_processing_the_agent_hears_itself(tmp_path: Path) -> None:
    """The control: in the same room, unprocessed, the agent's own voice is user speech."""
    async with room(tmp_path, "off") as r:
        await r.agent_speaking()
        await r.until(lambda: r.conn.interruptions or r.conn.turns, timeout=12)
    assert r.voice.said == 0


@pytest.mark.asyncio
async def test_with_processing_no_self_interruption_and_voice_barges_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebox.audio.engine")
    async with room(tmp_path, "on") as r:
        # the first message plays out without the agent cutting or answering itself
        await r.agent_speaking()
        await asyncio.sleep(1.5)
        assert r.conn.interruptions == [] and r.conn.turns == []
        # half duplex until the canceller is trusted (the mic muted while the agent speaks)
        await r.until(lambda: r.engine.stats().echo_converged)
        assert r.engine.playing  # still the first message
        # the user barges in over it: heard as an interruption, then as a turn
        r.voice.say(1.0)
        await r.until(lambda: len(r.conn.interruptions) >= 1)
        await r.until(lambda: len(r.conn.turns) >= 1)
        # and again over the reply to that
        await r.agent_speaking()
        await asyncio.sleep(0.5)
        r.voice.say(1.0)
        await r.until(lambda: len(r.conn.interruptions) >= 2)
        await r.until(lambda: len(r.conn.turns) >= 2)
        # the reply to the second turn plays out whole, and is not answered
        await r.agent_speaking()
        await r.agent_quiet()
        await asyncio.sleep(2.0)
        # a turn taken in a pause gets a reply that plays out whole too
        r.voice.say(1.0)
        await r.until(lambda: len(r.conn.turns) >= 3)
        await r.agent_speaking()
        await r.agent_quiet()
        await asyncio.sleep(2.0)
        stats = r.engine.stats()
    happened = (r.conn.interruptions, r.conn.turns, stats)
    assert len(r.conn.interruptions) == 2, happened  # the two barge-ins, nothing else
    assert "audio.echo_over_voice" not in caplog.text  # they got through: no false alarm
    assert len(r.conn.turns) == 3 and all(0.6 <= d <= 1.8 for d in r.conn.turns), r.conn.turns
    assert len(r.conn.agent_responses) == 4
    assert stats.processing and stats.echo_cancellation
    assert stats.erle_db is not None and stats.erle_db > 20
    assert stats.echo_delay_ms is not None and stats.echo_delay_ms > 0
    assert stats.processing_cpu_s > 0  # reported for status (the bench reads it)


@pytest.mark.asyncio
async def test_an_echo_louder_than_the_user_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A loud speaker beside the mic (the echo as loud as what is played) and a user far off, some
    14 dB under it: once the daemon has heard both the echo and the user, it warns that barge-in
    by voice will not be reliable."""
    caplog.set_level(logging.INFO, logger="voicebox.audio.engine")
    loud = {"audio.input.room.echo_db": 0.0, "audio.input.room.direct_db": 6.0}
    async with room(tmp_path, "on", **loud) as r:
        await r.agent_speaking()
        await r.until(lambda: r.engine.stats().echo_converged)
        await r.agent_quiet(timeout=30)
        r.voice.say(2.0, level=0.1)  # a turn in the pause
        await r.until(lambda: len(r.conn.turns) >= 1)
        await r.agent_speaking()
        await r.until(lambda: "audio.echo_over_voice" in caplog.text, timeout=20)
        stats = r.engine.stats()
    assert stats.echo_dbfs is not None and stats.voice_dbfs is not None
    assert stats.voice_dbfs < stats.echo_dbfs - 10.0
    warnings = [x for x in caplog.records if "audio.echo_over_voice" in x.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "audio.output.volume" in warnings[0].getMessage()
