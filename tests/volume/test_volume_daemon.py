"""The level through `voicebox run`: set by the agent's set_volume tool, kept across a restart,
measured in the output WAV; `voicebox volume` reads and sets it over the status socket."""

from __future__ import annotations

import asyncio
import math
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.daemon.test_daemon import KEY, Daemon, _config, _input_wav, run_daemon
from tests.mute.test_mute_daemon import _cli
from voicebox import volume
from voicebox.simulator.server import SimConfig, Simulator

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _greeting_played(d: Daemon) -> None:
    """Until the daemon went from speaking back to listening (the reply played out)."""
    async with asyncio.timeout(30):
        while True:
            spoke = [i for i, line in enumerate(d.lines) if "state=speaking" in line]
            if spoke and any("state=listening" in line for line in d.lines[spoke[0] :]):
                return
            await asyncio.sleep(0.05)


def _loudest_second_db(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        rate = w.getframerate()
    n = len(pcm) // rate
    power = (pcm[: n * rate].reshape(n, rate) ** 2).mean(axis=1)
    return 10 * math.log10(float(power.max()))


async def test_the_level_set_by_the_agent_survives_a_restart(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(api_key=KEY, first_message="Hello there, this is the agent."))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    config = _config(tmp_path, sim.url, "announcements: {enabled: false}\n")
    sock = str(tmp_path / "run" / "status.sock")
    try:
        async with run_daemon(tmp_path, config) as d:
            await d.note("READY=1")
            await sim.wait_connection(1, timeout=30)
            await _greeting_played(d)  # at the fresh box's 100
            result = await sim.tool_call("set_volume", {"level": 60})
            assert result is not None and not result.is_error and "60" in result.result
            rc, out, err = await _cli("volume", "--socket", sock)
            assert rc == 0 and out.startswith("volume 60 (-16.2 dB)"), out + err
            assert await d.stop() == 0
        shutil.copy(tmp_path / "out.wav", tmp_path / "first.wav")
        assert (tmp_path / "state" / "volume").read_text() == "60\n"
        (tmp_path / "notify.sock").unlink()
        async with run_daemon(tmp_path, config) as d:  # a restart: the greeting at 60
            await d.note("READY=1")
            await d.log_line("volume.restored")
            await sim.wait_connection(2, timeout=30)
            await _greeting_played(d)
            rc, out, err = await _cli("volume", "101", "--socket", sock)
            assert rc == 2 and "not a level" in err
            assert await d.stop() == 0
        drop = _loudest_second_db(tmp_path / "out.wav") - _loudest_second_db(tmp_path / "first.wav")
        assert drop == pytest.approx(20 * math.log10(volume.gain(60)), abs=1.0)
        assert not any("Traceback" in line for line in d.lines)
    finally:
        await sim.stop()
