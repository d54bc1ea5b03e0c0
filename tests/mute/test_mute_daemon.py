"""`voicebox mute` / `voicebox unmute` against a running `voicebox run`: the session closes, the
state is muted in status and metrics, and the mute survives a restart."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.daemon.test_daemon import KEY, _config, _input_wav, run_daemon
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.status import read_status

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_mute_closes_the_session_survives_a_restart_and_unmute_reopens(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(api_key=KEY, first_message=""))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    config = _config(tmp_path, sim.url)  # always_on
    sock = str(tmp_path / "run" / "status.sock")
    try:
        async with run_daemon(tmp_path, config) as d:
            await d.note("READY=1")
            first = await sim.wait_connection(1, timeout=30)
            rc, out, err = await _cli("mute", "--socket", sock)
            assert rc == 0 and "muted: yes" in out, out + err
            await sim.wait_for(lambda: first.closed, timeout=10)
            await d.note("STATUS=muted")
            rc, out, _ = await _cli("status", "--json", "--socket", sock)
            snap = json.loads(out)
            assert snap["state"] == "muted" and snap["muted"] is True
            rc, out, err = await _cli("mute", "--socket", sock)
            assert rc == 0 and "muted: yes" in out  # already muted: says so, changes nothing
            answer = await asyncio.to_thread(read_status, Path(sock), 5.0, "frobnicate")
            assert "unknown command 'frobnicate'" in answer["error"]
            assert await d.stop() == 0
        assert (tmp_path / "state" / "muted").read_text() == "1\n"
        assert len(sim.connections) == 1
        (tmp_path / "notify.sock").unlink()
        async with run_daemon(tmp_path, config) as d:  # a restart (or a power cut): still muted
            await d.note("READY=1")
            await d.log_line("mute.restored")
            await asyncio.sleep(1.0)
            assert len(sim.connections) == 1
            rc, out, err = await _cli("unmute", "--socket", sock)
            assert rc == 0 and "muted: no" in out, out + err
            await sim.wait_connection(2, timeout=30)  # always_on: a session opens again
            assert await d.stop() == 0
        assert (tmp_path / "state" / "muted").read_text() == "0\n"
        assert sum("mute.on" in line for line in d.lines) == 0
        assert any("mute.off" in line for line in d.lines)
        assert not any("Traceback" in line for line in d.lines)
    finally:
        await sim.stop()
