"""End to end with the real AudioEngine on file devices: negotiated formats, a turn, end_call."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicebox.audio.engine import AudioEngine
from voicebox.audio.files import read_wav_mono
from voicebox.config import Config, with_changes
from voicebox.convai.supervisor import Supervisor
from voicebox.convai.tools import builtin_tools
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.voice import speech_like
from voicebox.state import State


def _write_wav(path: Path, samples: np.ndarray[Any, Any], rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


@pytest.mark.asyncio
async def test_file_engine_conversation_with_negotiated_formats(tmp_path: Path) -> None:
    rate = 48000  # a typical device rate: resampled to the agent's ulaw_8000 on the way out
    mic = np.concatenate(
        [np.zeros(rate // 2, np.int16), speech_like(0.8, rate), np.zeros(rate * 8, np.int16)]
    )
    _write_wav(tmp_path / "mic.wav", mic, rate)
    sim = Simulator(
        SimConfig(
            first_message="",
            input_format="ulaw_8000",
            output_format="pcm_22050",
            end_call_after_turns=1,
            reply_delay_s=0.0,
            max_reply_s=1.5,
            ping_interval_s=0.5,
        )
    )
    await sim.start()
    cfg: Config = with_changes(
        Config(),
        **{
            "agent.agent_id": "agent_e2e",
            "agent.api_base": sim.url,
            "conversation.mode": "push_to_talk",
            "audio.input.backend": "file",
            "audio.input.path": str(tmp_path / "mic.wav"),
            "audio.output.backend": "file",
            "audio.output.path": str(tmp_path / "speaker.wav"),
        },
    )
    states: list[State] = []
    idle = asyncio.Event()

    def on_state(state: State, fields: dict[str, Any]) -> None:
        states.append(state)
        if state == State.IDLE and State.SPEAKING in states:
            idle.set()

    engine = AudioEngine(cfg.audio)
    sup = Supervisor(cfg, engine, None, builtin_tools(engine), on_state)
    await engine.start(sup.on_mic_chunk)
    runner = asyncio.create_task(sup.run())
    try:
        sup.press()  # the speech starts 0.5 s in, while the session is opening
        conn = await sim.wait_connection(1)
        await sim.wait_for(lambda: conn.turns, timeout=15)
        sup.release()
        await sim.wait_for(lambda: conn.closed, timeout=15)
        async with asyncio.timeout(15):
            await idle.wait()
    finally:
        await sup.stop()
        await runner
        await engine.stop()
        await sim.stop()
    assert 0.5 <= conn.turns[0] <= 1.3  # the user's 0.8 s utterance, heard through μ-law
    assert conn.close_code == 1000 and "Goodbye." in conn.agent_responses
    assert states.index(State.SPEAKING) < states.index(State.IDLE, states.index(State.SPEAKING))
    out, out_rate = read_wav_mono(str(tmp_path / "speaker.wav"), None)
    frames = out[: len(out) // (out_rate // 50) * (out_rate // 50)].reshape(-1, out_rate // 50)
    voiced = np.flatnonzero(np.abs(frames).max(axis=1) > 1000)
    assert len(voiced) / 50 >= 0.8  # the reply and the goodbye reached the speaker
    # 1.5 s reply + 0.4 s goodbye sent as pcm_22050: played at the right speed, the voiced span
    # is ~1.9 s (decoded as 16 kHz it would be ~2.6 s; as 44.1 kHz, ~1 s).
    span_s = (voiced[-1] - voiced[0] + 1) / 50
    assert 1.6 <= span_s <= 2.4, span_s
