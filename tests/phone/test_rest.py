"""The REST client: a bound on every request, retries with backoff inside a deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.phone.rig import ACCOUNT, TOKEN, free_port
from tests.phone.silent import SilentServer
from voicebox.config import Config, Secret, with_changes
from voicebox.phone import rest
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.twilio import TwilioFake


def test_retry_delay_backs_off_and_stays_inside_the_deadline() -> None:
    assert rest.retry_delay(1, 0, 10.0) == rest.RETRY_S
    assert rest.retry_delay(2, 503, 10.0) == 2 * rest.RETRY_S
    assert rest.retry_delay(3, 429, 10.0) == 4 * rest.RETRY_S
    assert rest.retry_delay(9, 0, 100.0) == rest.RETRY_MAX_S
    # A wrong request is not retried; no attempt starts without time left for it.
    assert rest.retry_delay(1, 401, 10.0) is None
    assert rest.retry_delay(1, 404, 10.0) is None
    assert rest.retry_delay(1, 0, rest.RETRY_S + rest.MIN_ATTEMPT_S / 2) is None
    assert rest.ATTEMPT_S < rest.DEADLINE_S < 30.0  # TimeoutStopSec of voicebox-phone.service


def _cfg(api_base: str) -> Config:
    cfg: Config = with_changes(
        Config(), **{"phone.account_sid": ACCOUNT, "phone.api_base": api_base}
    )
    return cfg


@pytest.mark.asyncio
async def test_a_rest_request_to_a_server_that_never_answers_fails_within_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same bounds scaled down (two attempts still fit the deadline); the shipped ones are
    # checked above, and `voicebox call` below waits them out against the same silent server.
    monkeypatch.setattr(rest, "ATTEMPT_S", 1.5)
    monkeypatch.setattr(rest, "DEADLINE_S", 4.0)
    silent = SilentServer()
    await silent.start()
    client = rest.make_client(_cfg(silent.url).phone, Secret(TOKEN))
    try:
        with pytest.raises(rest.RestError, match="complete_call: no answer"):
            async with asyncio.timeout(60):  # generous: the point is that it ends at all
                await rest.complete_call(client, "CA" + "1" * 32)
        assert silent.connections >= 2, "retried"
    finally:
        await rest.close_client(client)
        await silent.stop()


def _config_file(tmp_path: Path, api_base: str, port: int, sim_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"agent:\n  agent_id: agent_test\n  api_base: {sim_url}\n"
        f"phone:\n  enabled: true\n  listen_port: {port}\n"
        f"  public_url: http://127.0.0.1:{port}\n  account_sid: {ACCOUNT}\n"
        f"  from_number: '+15550100002'\n  api_base: {api_base}\n"
        f"paths:\n  state_dir: {tmp_path}/state\n  runtime_dir: {tmp_path}/unused\n"
    )
    return path


@pytest.mark.asyncio
@pytest.mark.slow
async def test_voicebox_call_against_a_silent_api_exits_with_one_line(tmp_path: Path) -> None:
    silent = SilentServer()
    await silent.start()
    cfg = _config_file(tmp_path, silent.url, free_port(), "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "call", "+15550100003", "--config", str(cfg),
        env={**os.environ, "TWILIO_AUTH_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await silent.stop()
    assert proc.returncode == 1 and out == b""
    lines = [line for line in err.decode().splitlines() if line.startswith("voicebox call:")]
    assert lines and lines[-1].startswith("voicebox call: create_call: no answer"), err.decode()
    assert "Traceback" not in err.decode() and TOKEN not in err.decode()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_sigterm_ends_voicebox_phone_with_a_call_while_the_api_never_answers(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(output_format="ulaw_8000", input_format="ulaw_8000"))
    await sim.start()
    fake = TwilioFake(ACCOUNT, TOKEN)  # the caller's side; its REST API is not used
    await fake.start()
    silent = SilentServer()
    await silent.start()
    port = free_port()
    cfg = _config_file(tmp_path, silent.url, port, sim.url)
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
        proc.send_signal(signal.SIGTERM)
        # Within the unit's TimeoutStopSec (30 s) the process is gone, the call given up.
        text = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert "call.complete_failed" in text and "call.ended" in text, text
        assert "phone.stopped" in text and "Traceback" not in text
        await fake.wait_for(lambda: call.stopped.is_set())  # the stream was closed
        assert all(not c.live for c in sim.connections)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await silent.stop()
        await fake.stop()
        await sim.stop()
