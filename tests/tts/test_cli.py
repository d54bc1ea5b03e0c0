"""`voicebox say` and `voicebox announcements` end to end in subprocesses, against the simulator."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.tts.conftest import KEY, Sim
from voicebox.simulator.tts import word_tone

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, base: str, extra: str = "") -> Path:
    silence = tmp_path / "mic.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    path = tmp_path / "config.yaml"
    path.write_text(
        f"agent:\n  api_base: {base}\n"
        f"audio:\n  input:\n    backend: file\n    path: {silence}\n"
        f"  output:\n    backend: file\n    path: {tmp_path / 'speaker.wav'}\n"
        f"    sample_rate: 16000\n    prebuffer_ms: 0\n"
        f"paths:\n  state_dir: {tmp_path / 'state'}\n  runtime_dir: {tmp_path / 'run'}\n" + extra
    )
    return path


async def voicebox(*args: str, key: str | None = KEY) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    if key is not None:
        env["ELEVENLABS_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def wav_samples(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.mark.asyncio
async def test_say_writes_a_wav(sim: Sim, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sim.base)
    out = tmp_path / "hello.wav"
    rc, text = await voicebox("say", "--config", str(cfg), "Hello world.", "--out", str(out))
    assert (rc, text) == (0, "")
    rate, samples = wav_samples(out)
    expected = np.concatenate([word_tone("Hello", 16000), word_tone("world.", 16000)])
    assert rate == 16000 and np.array_equal(samples, expected)
    assert sim.tts_requests[0].key_sent


@pytest.mark.asyncio
async def test_say_plays_through_the_configured_output(sim: Sim, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sim.base)
    rc, text = await voicebox("say", "--config", str(cfg), "Ready.")
    assert (rc, text) == (0, "")
    rate, samples = wav_samples(tmp_path / "speaker.wav")
    tone = word_tone("Ready.", 16000)[:1000]
    # the tone is in the device's timeline, somewhere after leading silence
    start = int(np.argmax(np.abs(samples) > 0)) - 1  # the tone's first sample is 0
    assert rate == 16000 and np.abs(samples).max() > 5000
    assert np.abs(samples[start : start + 1000].astype(int) - tone).max() <= 1


@pytest.mark.asyncio
async def test_say_failures_are_one_line_without_the_key(sim: Sim, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sim.base)
    rc, text = await voicebox("say", "--config", str(cfg), "Hi.", key="sk_wrong_key_123456")
    assert rc == 1
    assert text == "voicebox say: synthesis failed: Invalid API key (code 1008)\n"
    rc, text = await voicebox("say", "--config", str(cfg), "Hi.", key=None)
    assert rc == 1 and "no API key" in text and text.count("\n") == 1
    bad = write_config(tmp_path, sim.base, "tts:\n  voice_settings:\n    speed: 3\n")
    rc, text = await voicebox("say", "--config", str(bad), "Hi.")
    assert rc == 78 and "tts.voice_settings.speed" in text
    assert "Traceback" not in text and KEY not in text


@pytest.mark.asyncio
async def test_prefetch_then_list(sim: Sim, tmp_path: Path, dead_base: str) -> None:
    cfg = write_config(tmp_path, sim.base)
    rc, text = await voicebox("announcements", "--config", str(cfg), "--prefetch")
    assert rc == 0, text
    assert text.count("synthesised") == 4 and KEY not in text
    assert len(list((tmp_path / "state" / "tts").glob("*.pcm"))) == 4
    offline = write_config(tmp_path, dead_base)
    rc, text = await voicebox("announcements", "--config", str(offline), "--prefetch")
    assert rc == 0 and text.count("cached") == 4
    rc, text = await voicebox("announcements", "--config", str(offline))
    assert rc == 0
    assert "ready         cached      Ready." in text and "rollover      (disabled)" in text
    rc, text = await voicebox("announcements", "--config", str(offline), "--prefetch", key=None)
    assert rc == 0  # everything is cached: no key needed
    extra = "announcements:\n  rollover: Starting a new session.\n"
    rc, text = await voicebox(
        "announcements", "--config", str(write_config(tmp_path, dead_base, extra)), "--prefetch"
    )
    assert rc == 1 and "failed: cannot reach 127.0.0.1" in text and "Traceback" not in text
