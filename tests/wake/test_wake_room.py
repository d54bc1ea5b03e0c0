"""The agent saying the wake word in its own reply, heard through a simulated room, does not wake
the box: the detector listens after the echo canceller. With the canceller off the same room wakes
it (the control that shows the test can fail)."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.daemon.test_daemon import KEY, run_daemon
from tests.wake.speech import say
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.voice import silence

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

# Long enough for the canceller to be trusted before the word; then the word, twice.
GREETING = (
    "Hello there, I am the voice of this box, and this is a rather long greeting, so that the "
    "room can settle. Now listen. Okay nabu. Did that wake you up? Okay nabu. Thank you."
)


def _agent_voice(text: str, rate: int) -> np.ndarray:
    assert rate == 16000, rate
    return say(text, "en-us", 150)


def _config(tmp: Path, api_base: str, echo_cancellation: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: test-agent
  api_base: {api_base}
audio:
  input:
    backend: room
    path: {tmp / "in.wav"}
    room: {{delay_ms: 40, tail_ms: 250, echo_db: -6, noise_dbfs: -65}}
  output: {{backend: file, path: {tmp / "out.wav"}}}
  processing: {{echo_cancellation: "{echo_cancellation}", noise_suppression: moderate}}
conversation:
  mode: wake_word
  idle_close_s: 60
wake:
  model: okay_nabu
announcements:
  enabled: false
gpio:
  button: {{pin: null}}
monitor:
  health_interval_s: 0
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
"""
    )
    return path


def _detections(lines: list[str]) -> int:
    return sum("wake.detected" in line for line in lines)


@pytest.mark.parametrize("echo_cancellation", ["on", "off"])
async def test_the_wake_word_in_the_agents_reply_does_not_wake_the_box(
    tmp_path: Path, echo_cancellation: str
) -> None:
    user = [silence(1.5), say("Okay nabu"), silence(40.0)]
    with wave.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(user).astype("<i2").tobytes())
    # Without the canceller the agent's echo would cut its own greeting (the service's VAD) before
    # the word: the control keeps the greeting playing so the word reaches the room.
    sim = Simulator(
        SimConfig(
            api_key=KEY,
            first_message=GREETING,
            voice=_agent_voice,
            record_audio=True,
            interruptions=echo_cancellation == "on",
        )
    )
    await sim.start()
    try:
        config = _config(tmp_path, sim.url, echo_cancellation)
        async with run_daemon(tmp_path, config, {"ELEVENLABS_API_KEY": KEY}) as d:
            await d.note("READY=1")
            first = await sim.wait_connection(1, timeout=60)  # the user's wake word
            await sim.wait_for(lambda: bool(first.sent_replies), timeout=60)
            reply = first.sent_replies[0]
            length = len(reply.pcm) / 2 / 16000
            assert length > 8.0  # real speech: the word comes well after the start-up gate
            loop = asyncio.get_running_loop()
            remaining = reply.start + length + 2.0 - loop.time()
            if echo_cancellation == "on":
                with contextlib.suppress(TimeoutError):  # the whole reply played, or it was cut
                    await sim.wait_for(lambda: bool(first.interruptions), timeout=remaining)
                await asyncio.sleep(1.0)
            else:  # the control is shown as soon as the agent's own word has woken the box
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        while True:  # the daemon's log reader appends to d.lines
                            if _detections(d.lines) >= 2:
                                break
                            await asyncio.sleep(0.05)
            detected = [line for line in d.lines if "wake.detected" in line]
            assert await d.stop() == 0
        if echo_cancellation == "on":
            assert len(detected) == 1, detected  # the user's word only
            assert first.interruptions == [] and reply.played_s is None  # the reply played whole
            assert len(sim.connections) == 1
        else:  # the control: the same room, no canceller, and the agent wakes the box itself
            assert len(detected) >= 2, detected
            assert "outcome=barge_in" in detected[1]
    finally:
        await sim.stop()
