"""`voicebox run` in wake_word mode against the simulator, a WAV mic saying the wake word and then
a question (espeak-ng): one session per wake, the question reaches it whole, it closes after the
idle time, and a second wake opens a new one."""

from __future__ import annotations

import asyncio
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.daemon.test_daemon import KEY, run_daemon
from tests.wake.speech import say
from voicebox.simulator import bursts
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.voice import silence

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _positions(log: bursts.BurstLog, number: int, conn: int) -> set[int]:
    return {
        p
        for _, c, k, lo, hi, _ in log.arrivals
        if k == number and c == conn
        for p in range(lo, hi + 1)
    }


def _write(path: Path, parts: list[np.ndarray]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(parts).astype("<i2").tobytes())


def _config(tmp: Path, api_base: str, mode: str = "wake_word") -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: test-agent
  api_base: {api_base}
audio:
  input: {{backend: file, path: {tmp / "in.wav"}}}
  output: {{backend: file, path: {tmp / "out.wav"}}}
  processing: {{echo_cancellation: "off", noise_suppression: "off", high_pass: false}}
conversation:
  mode: {mode}
  idle_close_s: 2.5
wake:
  model: okay_nabu
announcements:
  enabled: false
gpio:
  button: {{pin: null}}
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
"""
    )
    return path


async def test_each_wake_opens_one_session_that_gets_the_question_whole(tmp_path: Path) -> None:
    wake = say("Okay nabu")
    # The questions carry burst codes in their low bits: the simulator tells what arrived.
    q1 = bursts.encode_burst(21, say("What is the weather like today?"))
    q2 = bursts.encode_burst(22, say("And tomorrow?"))
    _write(
        tmp_path / "in.wav",
        [silence(1.5), wake, silence(0.1), q1, silence(5.5), wake, silence(0.1), q2, silence(20.0)],
    )
    # Short answers (the question is what is checked): the session's idle close comes ~1.4 s
    # sooner, and the second wake with it; the margin before it is the same.
    sim = Simulator(SimConfig(api_key=KEY, first_message="", count_bursts=True, max_reply_s=0.5))
    await sim.start()
    try:
        async with run_daemon(tmp_path, _config(tmp_path, sim.url)) as d:
            await d.note("READY=1")
            await d.log_line("wake.listening")
            log = sim.bursts
            assert log is not None
            first = await sim.wait_connection(1, timeout=30)
            await sim.wait_for(lambda: first.closed, timeout=30)
            second = await sim.wait_connection(2, timeout=30)
            await sim.wait_for(lambda: second.closed, timeout=30)
            await asyncio.sleep(0.5)
            status = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voicebox", "status", "--json",
                "--socket", str(tmp_path / "run" / "status.sock"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await status.communicate()
            assert status.returncode == 0, err.decode()
            snap = json.loads(out)
            assert await d.stop() == 0
    finally:
        await sim.stop()
    for conn, (number, q) in enumerate([(21, q1), (22, q2)], start=1):
        assert _positions(log, number, conn) == set(range(bursts.positions(len(q))))
    assert first.close_reason == "idle" and second.close_reason == "idle"
    assert len(sim.connections) == 2
    detected = [line for line in d.lines if "wake.detected" in line]
    assert len(detected) == 2 and all("outcome=opened" in line for line in detected)
    assert sum("wake.listening" in line for line in d.lines) == 3  # at start, after each close
    assert snap["mode"] == "wake_word" and snap["wake"]["detections"] == 2
    assert snap["counters"]["wakes"] == 2
    assert not any("Traceback" in line for line in d.lines)


async def test_a_bad_wake_model_path_is_one_line_and_exit_78(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace("model: okay_nabu", "model: /nope/word.json"))
    _write(tmp_path / "in.wav", [silence(1.0)])
    async with run_daemon(tmp_path, config) as d:
        rc = await asyncio.wait_for(d.proc.wait(), 30)
        await asyncio.sleep(0.2)
    assert rc == 78
    problems = [line for line in d.lines if "wake.model" in line]
    assert problems and "/nope/word.json" in problems[0]
    assert not any("Traceback" in line for line in d.lines)
