"""Timers through `voicebox run` against the simulator: set by the agent's tool call, rung in the
output WAV with no conversation open, stopped by the button or at the limit, kept across a
kill -9, stopped by "stop" said in a conversation, said once when missed, and `voicebox timers`."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.daemon.test_daemon import KEY, Daemon, _config, _input_wav, run_daemon
from tests.mute.test_mute_daemon import _cli
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.timers import store
from voicebox.timers.book import Timer

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
RING_HZ = 988.0


def ring_seconds(path: Path) -> list[float]:
    """Start times of the 100 ms windows of the WAV where the ring's tone is most of the sound."""
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    n = rate // 10
    found = []
    for i in range(len(pcm) // n):
        x = pcm[i * n : (i + 1) * n]
        power = float(np.dot(x, x))
        if power < n * 300.0**2:  # quieter than about -40 dBFS
            continue
        spectrum = np.abs(np.fft.rfft(x * np.hanning(n))) ** 2
        freqs = np.fft.rfftfreq(n, 1 / rate)
        near = spectrum[np.abs(freqs - RING_HZ) <= 30].sum()
        if near / spectrum.sum() > 0.8:
            found.append(i / 10)
    return found


def _timers_config(tmp: Path, url: str, mode: str, ring_limit_s: float) -> Path:
    config = _config(tmp, url, f"timers: {{ring_limit_s: {ring_limit_s}}}\n")
    text = config.read_text().replace(
        "  mode: always_on\n", f"  mode: {mode}\n  idle_close_s: 1.5\n"
    )
    config.write_text(text)
    return config


async def _press(d: Daemon) -> None:
    assert d.proc.stdin is not None
    d.proc.stdin.write(b"\n")
    await d.stdin_drain()


async def test_a_timer_set_by_the_agent_rings_while_idle_until_the_limit_or_a_press(
    tmp_path: Path,
) -> None:
    sim = Simulator(
        SimConfig(
            api_key=KEY,
            first_message="",
            tool_script={1: ("set_timer", {"duration": "9 seconds", "name": "toast"})},
        )
    )
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    config = _timers_config(tmp_path, sim.url, "push_to_talk", ring_limit_s=2.5)
    sock = str(tmp_path / "run" / "status.sock")
    try:
        async with run_daemon(tmp_path, config, None, "--simulate-button") as d:
            await d.note("READY=1")
            await d.log_line("button.simulated")
            await _press(d)  # talk: the simulator's agent answers turn 1 with set_timer
            first = await sim.wait_connection(1, timeout=30)
            result = await sim.tool_call("set_timer", {"duration": "4 seconds", "name": "tea"})
            assert result is not None and not result.is_error
            assert result.result.startswith("timer 'tea' set for 4 seconds, rings at ")
            bad = await sim.tool_call("set_timer", {"duration": "forever"})
            assert bad is not None and bad.is_error and "not a length of time" in bad.result
            await sim.wait_for(lambda: len(first.tool_calls) >= 3, timeout=30)  # the scripted one
            await _press(d)  # release: the session closes after idle_close_s
            await sim.wait_for(lambda: first.closed, timeout=30)
            await d.note("STATUS=idle")
            await d.log_line("timers.ringing name=tea")
            rc, out, err = await _cli("status", "--json", "--socket", sock)
            snap = json.loads(out)
            assert snap["state"] == "idle" and snap["timers"]["ringing"] == ["tea"], out + err
            assert snap["timers"]["next"]["name"] == "toast"
            await d.log_line("timers.ring_stopped reason=limit")
            await d.log_line("timers.ringing name=toast")
            await _press(d)  # the button stops a ring, and opens nothing
            await d.log_line("timers.ring_stopped reason=button")
            await asyncio.sleep(1.0)
            assert len(sim.connections) == 1
            assert await d.stop() == 0
        rings = ring_seconds(tmp_path / "out.wav")
        assert rings, "no ring in the output WAV"
        assert len(rings) >= 5  # both beep groups of a cycle (0.64 s of tone in 1.9 s)
        assert store.load(tmp_path / "state") == []
        assert not any("Traceback" in line for line in d.lines)
    finally:
        await sim.stop()


async def test_a_timer_survives_kill_9_rings_on_time_and_stop_said_ends_it(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(api_key=KEY, first_message=""))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    config = _timers_config(tmp_path, sim.url, "always_on", ring_limit_s=60)
    sock = str(tmp_path / "run" / "status.sock")
    try:
        async with run_daemon(tmp_path, config) as d:
            await d.note("READY=1")
            await sim.wait_connection(1, timeout=30)
            result = await sim.tool_call("set_timer", {"duration": 8, "name": "eggs"})
            assert result is not None and not result.is_error, result
            result = await sim.tool_call("set_alarm", {"time": "04:00", "name": "bins"})
            assert result is not None and result.result.startswith("alarm 'bins' set for 04:00")
            rc, out, err = await _cli("timers", "--socket", sock)
            assert rc == 0 and "eggs" in out and "bins" in out, out + err
            d.proc.kill()  # kill -9: nothing is saved on the way out
            await d.proc.wait()
        (eggs,) = [t for t in store.load(tmp_path / "state") if t.name == "eggs"]
        (tmp_path / "notify.sock").unlink()
        async with run_daemon(tmp_path, config) as d:
            await d.note("READY=1")
            conn = await sim.wait_connection(2, timeout=30)
            await d.log_line("timers.ringing name=eggs")
            heard_at = time.time()
            assert heard_at >= eggs.due - 0.5  # not early (the log line comes after the tick)
            assert heard_at <= eggs.due + 5.0  # and not late by more than the restart's noise
            await sim.send_raw(json.dumps({
                "type": "user_transcript",
                "user_transcription_event": {"user_transcript": "OK, stop it please"},
            }), index=conn.index)  # fmt: skip
            await d.log_line("timers.ring_stopped reason=said")
            rc, out, err = await _cli("timers", "cancel", "bins", "--socket", sock)
            assert rc == 0 and "alarm 'bins' cancelled" in out, out + err
            rc, out, err = await _cli("timers", "cancel", "nothing", "--socket", sock)
            assert rc != 0 and "no timers or alarms are set" in err, out + err
            assert await d.stop() == 0
        assert store.load(tmp_path / "state") == []
        assert not any("Traceback" in line for line in d.lines)
    finally:
        await sim.stop()


async def test_a_timer_due_while_the_box_was_off_is_said_once(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(api_key=KEY, first_message=""))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    now = time.time()
    store.save(tmp_path / "state", [Timer("pasta", "timer", now - 3600, now - 4000, 400.0)])
    config = _timers_config(tmp_path, sim.url, "push_to_talk", ring_limit_s=60)
    try:
        for run in (1, 2):
            async with run_daemon(tmp_path, config, {"ELEVENLABS_API_KEY": KEY}) as d:
                await d.note("READY=1")
                await asyncio.sleep(1.5)
                assert await d.stop() == 0
            missed = [line for line in d.lines if "timers.missed" in line]
            assert len(missed) == (1 if run == 1 else 0), missed
            (tmp_path / "notify.sock").unlink()
        assert "name=pasta" in "".join(missed) or run == 2
        assert store.load(tmp_path / "state") == []
    finally:
        await sim.stop()
