"""`voicebox phone` as its own process: a call, its status socket, SIGTERM completes the call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.phone.rig import ACCOUNT, TOKEN, free_port
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.twilio import TwilioFake

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_phone_process_serves_a_call_reports_it_and_completes_it_on_sigterm(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(output_format="ulaw_8000", input_format="ulaw_8000"))
    await sim.start()
    fake = TwilioFake(ACCOUNT, TOKEN)
    await fake.start()
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"agent:\n  agent_id: agent_test\n  api_base: {sim.url}\n"
        f"phone:\n  enabled: true\n  listen_port: {port}\n"
        f"  public_url: http://127.0.0.1:{port}\n  account_sid: {ACCOUNT}\n"
        f"  api_base: {fake.api_base}\n"
        f"paths:\n  state_dir: {tmp_path}/state\n  runtime_dir: {tmp_path}/unused\n"
    )
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "RUNTIME_DIRECTORY": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "phone", "--config", str(cfg),
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"phone.listening" not in await proc.stderr.readline():
                pass
        call = await fake.incoming_call(f"http://127.0.0.1:{port}/twilio/voice")
        await fake.wait_for(lambda: call.heard_s() > 0.3)
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "status", "--json",
            "--socket", str(tmp_path / "phone.sock"),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await status.communicate()
        snap = json.loads(out)
        assert snap["active_calls"] == 1 and call.sid in snap["calls"]
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        assert await proc.wait() == 0
        assert call.completed_by_rest_at is not None, rest.decode()
        text = rest.decode()
        assert "call.ended" in text and "by=shutdown" in text
        assert TOKEN not in text
        assert all(not c.live for c in sim.connections)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.stop()
        await sim.stop()
