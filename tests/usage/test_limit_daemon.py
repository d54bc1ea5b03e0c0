"""`voicebox run` with conversation.daily_limit_minutes: the minutes are counted and kept across a
restart, the limit closes the conversation and keeps it closed, and the button still opens one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from tests.daemon.test_daemon import KEY, _config, _input_wav, run_daemon
from tests.mute.test_mute_daemon import _cli
from voicebox.simulator.server import SimConfig, Simulator

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_the_daily_limit_closes_always_on_survives_a_restart_and_the_button_overrides(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(api_key=KEY, first_message=""))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    config = _config(tmp_path, sim.url)  # always_on
    text = config.read_text().replace(
        "  mode: always_on\n", "  mode: always_on\n  daily_limit_minutes: 0.05\n"
    )
    config.write_text(text.replace("gpio:\n", "monitor: {interval_s: 0.25}\ngpio:\n"))
    sock = str(tmp_path / "run" / "status.sock")
    try:
        async with run_daemon(tmp_path, config) as d:
            await d.note("READY=1")
            first = await sim.wait_connection(1, timeout=30)
            line = await d.log_line("usage.limit_reached")  # 3 s of an open session
            await sim.wait_for(lambda: first.closed, timeout=10)
            assert first.closed_by == "client" and "limit_minutes=0.05" in line
            await d.note("STATUS=idle")
            await asyncio.sleep(1.0)
            assert len(sim.connections) == 1  # always_on, but nothing reopens
            rc, out, _ = await _cli("status", "--json", "--socket", sock)
            snap = json.loads(out)["usage"]
            assert snap["limited"] is True and snap["today_minutes"] >= 0.05
            assert await d.stop() == 0
        days = json.loads((tmp_path / "state" / "usage.json").read_text())["days"]
        today = days[dt.date.today().isoformat()]
        assert 3.0 <= today["open_s"] < 20.0
        (tmp_path / "notify.sock").unlink()
        async with run_daemon(tmp_path, config, None, "--simulate-button") as d:
            await d.note("READY=1")
            await d.log_line("usage.limit_reached")  # still over today's limit after a restart
            await d.log_line("button.simulated")
            await asyncio.sleep(1.0)
            assert len(sim.connections) == 1
            assert d.proc.stdin is not None
            d.proc.stdin.write(b"\n")  # the button: one conversation more
            await d.stdin_drain()
            await d.log_line("usage.limit_overridden")
            second = await sim.wait_connection(2, timeout=30)
            await sim.wait_for(lambda: second.user_audio_chunks > 20, timeout=30)
            assert not second.closed  # the override is not cut by the next sample's count
            assert await d.stop() == 0
        assert not any("Traceback" in line for line in d.lines)
    finally:
        await sim.stop()
