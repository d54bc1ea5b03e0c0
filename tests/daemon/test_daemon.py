"""`voicebox run` as systemd runs it: a real subprocess, a real NOTIFY_SOCKET, the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.voice import silence, speech_like

KEY = "sk_daemon_test_0123456789abcdef"
HANG_GUARD_S = 60.0


def _input_wav(path: Path) -> None:
    parts = [silence(1.0), speech_like(1.2), silence(1.5), speech_like(1.2), silence(30.0)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(parts).astype("<i2").tobytes())


def _config(tmp: Path, api_base: str, extra: str = "", agent_extra: str = "") -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: test-agent
  api_base: {api_base}
{agent_extra}audio:
  input: {{backend: file, path: {tmp / "in.wav"}}}
  output: {{backend: file, path: {tmp / "out.wav"}}}
conversation:
  mode: always_on
gpio:
  button: {{pin: null}}
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
{extra}"""
    )
    return path


class Daemon:
    """A `voicebox run` subprocess with its notify socket and its log lines."""

    def __init__(self, proc: asyncio.subprocess.Process, notify: socket.socket) -> None:
        self.proc = proc
        self.notify = notify
        self.lines: list[str] = []
        self.notes: list[dict[str, str]] = []
        self._reader = asyncio.create_task(self._read_log())

    async def _read_log(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    async def note(self, predicate: str) -> dict[str, str]:
        """The next sd_notify datagram that has `predicate` (KEY or KEY=VALUE prefix)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                data = await loop.sock_recv(self.notify, 4096)
                fields = dict(
                    line.split("=", 1) for line in data.decode().splitlines() if "=" in line
                )
                self.notes.append(fields)
                key, _, value = predicate.partition("=")
                if key in fields and fields[key].startswith(value):
                    return fields

    async def log_line(self, text: str) -> str:
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                await asyncio.sleep(0.05)

    async def stdin_drain(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.drain()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(HANG_GUARD_S):
            rc = await self.proc.wait()
            await self._reader
        return rc


@contextlib.asynccontextmanager
async def run_daemon(
    tmp: Path, config: Path, env_extra: dict[str, str] | None = None, *args: str
) -> AsyncIterator[Daemon]:
    sock_path = tmp / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.setblocking(False)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "NOTIFY_SOCKET": str(sock_path),
        **(env_extra or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicebox",
        "run",
        "--config",
        str(config),
        *args,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE if args else asyncio.subprocess.DEVNULL,
        env=env,
    )
    daemon = Daemon(proc, notify)
    try:
        yield daemon
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(api_key=KEY, first_message="Hello there, how can I help?"))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.mark.asyncio
async def test_lifecycle_ready_reload_and_sigterm_mid_reply(tmp_path: Path, sim: Simulator) -> None:
    _input_wav(tmp_path / "in.wav")
    config = _config(tmp_path, sim.url)
    async with run_daemon(tmp_path, config) as d:
        ready = await d.note("READY=1")
        assert "STATUS" in ready
        await d.note("STATUS=speaking")  # the greeting is playing

        # `voicebox status` reads the running daemon's socket (owner-only) in the runtime dir.
        sock = tmp_path / "run" / "status.sock"
        assert sock.stat().st_mode & 0o777 == 0o600
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "status", "--json", "--socket", str(sock),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await status.communicate()
        assert status.returncode == 0
        snap = json.loads(out)
        assert snap["state"] in ("speaking", "listening")
        assert snap["conversation"]["id"] == sim.connections[0].conversation_id
        assert {"audio", "monitor", "tuning", "counters"} <= snap.keys()

        # A valid reload: RELOADING with a monotonic timestamp, then READY again.
        config.write_text(config.read_text().replace("gpio:", "logging:\n  level: debug\ngpio:"))
        d.proc.send_signal(signal.SIGHUP)
        reloading = await d.note("RELOADING=1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        await d.note("READY=1")
        await d.log_line("config.reloaded")

        # An invalid reload is refused with the file, line and key; the daemon carries on.
        good = config.read_text()
        config.write_text(good + "tuning:\n  adaptive: sometimes\n")
        d.proc.send_signal(signal.SIGHUP)
        await d.note("RELOADING=1")
        await d.note("READY=1")
        refused = await d.log_line("config.reload_refused")
        assert "tuning.adaptive" in refused and "config.yaml:" in refused
        assert d.proc.returncode is None

        # SIGTERM while the agent speaks: STOPPING, a clean close, exit 0.
        await d.note("STATUS=speaking")
        d.proc.send_signal(signal.SIGTERM)
        await d.note("STOPPING=1")
        assert await d.stop() == 0
    log = "\n".join(d.lines)
    assert "Traceback" not in log
    assert "daemon.stopped" in log
    closes = [c.close_code for c in sim.connections if c.conversation_id]
    assert closes[-1] == 1000  # we closed the socket normally
    with wave.open(str(tmp_path / "out.wav")) as w:  # complete and valid
        frames = w.getnframes()
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        audio = np.frombuffer(w.readframes(frames), dtype="<i2")
    assert frames > 0 and len(audio) == frames
    header_bytes = (tmp_path / "out.wav").stat().st_size - frames * 2
    assert header_bytes == 44
    assert np.abs(audio).max() > 1000  # the agent's voice is in it, not only silence


@pytest.mark.asyncio
async def test_reload_with_an_unknown_yaml_tag_is_refused_and_ready_follows(
    tmp_path: Path, sim: Simulator
) -> None:
    """A tag such as !device is a config problem with its line, not a crash of the reload."""
    _input_wav(tmp_path / "in.wav")
    config = _config(tmp_path, sim.url)
    async with run_daemon(tmp_path, config) as d:
        await d.note("READY=1")
        good = config.read_text()
        config.write_text(good.replace("gpio:", "tuning:\n  adaptive: !device yes\ngpio:"))
        line = config.read_text().splitlines().index("  adaptive: !device yes") + 1
        d.proc.send_signal(signal.SIGHUP)
        await d.note("RELOADING=1")
        await d.note("READY=1")
        refused = await d.log_line("config.reload_refused")
        assert f"config.yaml:{line}: tuning.adaptive:" in refused and "!device" in refused
        assert d.proc.returncode is None
        assert await d.stop() == 0
    assert "Traceback" not in "\n".join(d.lines)


@pytest.mark.asyncio
async def test_a_microphone_missing_at_start_is_waited_for(tmp_path: Path, sim: Simulator) -> None:
    """READY=1 with a STATUS naming the missing device, the degraded state, no exit (systemd's
    start limit would leave a dead appliance); when it appears the conversation starts."""
    config = _config(tmp_path, sim.url)
    async with run_daemon(tmp_path, config, {"WATCHDOG_USEC": "1000000"}) as d:
        ready = await d.note("READY=1")
        assert ready["STATUS"].startswith("degraded reason=audio_device waiting for ")
        assert "in.wav" in ready["STATUS"]
        waiting = await d.log_line("audio.waiting")
        assert "in.wav" in waiting
        state = await d.log_line("state state=degraded")
        assert "waiting_for=" in state
        sock = tmp_path / "run" / "status.sock"
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "status", "--json", "--socket", str(sock),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await status.communicate()
        assert json.loads(out)["state"] == "degraded"
        await d.log_line("audio.reopen_failed")  # retried with backoff, still missing
        await d.note("WATCHDOG=1")  # waiting is healthy: a restart would not bring it sooner
        assert not sim.connections  # nothing opened (or billed) without a microphone
        assert d.proc.returncode is None
        _input_wav(tmp_path / "in.tmp")
        (tmp_path / "in.tmp").rename(tmp_path / "in.wav")  # the device appears
        await d.log_line("audio.device_reopened")
        await d.note("STATUS=speaking")  # the agent's greeting plays
        await sim.wait_for(lambda: sim.connections[0].user_audio_chunks >= 10, timeout=HANG_GUARD_S)
        assert await d.stop() == 0
    log = "\n".join(d.lines)
    assert "Traceback" not in log and log.count("audio.waiting") == 1


@pytest.mark.asyncio
async def test_api_key_never_logged_even_at_debug(tmp_path: Path) -> None:
    simulator = Simulator(SimConfig(api_key=KEY, require_signature=True))
    await simulator.start()
    try:
        _input_wav(tmp_path / "in.wav")
        config = _config(
            tmp_path, simulator.url, "logging:\n  level: debug\n", "  requires_auth: true\n"
        )
        async with run_daemon(tmp_path, config, {"ELEVENLABS_API_KEY": KEY}) as d:
            await d.note("READY=1")
            await d.log_line("session.opened")  # the signed URL was fetched with the key
            assert await d.stop() == 0
        log = "\n".join(d.lines)
        assert KEY not in log
        assert KEY not in "".join(str(n) for n in d.notes)
        assert any(c.conversation_id for c in simulator.connections)
    finally:
        await simulator.stop()


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("audio:\n  output:\n    prebuffer_ms: fast\n", "audio.output.prebuffer_ms"),
        ("agent:\n  agent_id: ''\n", "agent.agent_id: required"),
        ("agent:\n  agent_id: a\n  requires_auth: true\n", "no API key was found"),
    ],
)
def test_invalid_config_exits_78_without_traceback(
    tmp_path: Path, yaml_text: str, expected: str
) -> None:
    import subprocess

    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    res = subprocess.run(
        [sys.executable, "-m", "voicebox", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        timeout=HANG_GUARD_S,
    )
    assert res.returncode == 78
    assert expected in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.asyncio
async def test_push_to_talk_with_the_simulated_button(tmp_path: Path, sim: Simulator) -> None:
    _input_wav(tmp_path / "in.wav")
    config = _config(tmp_path, sim.url)
    text = config.read_text().replace(
        "  mode: always_on\n", "  mode: push_to_talk\n  idle_close_s: 1.5\n"
    )
    config.write_text(text)
    async with run_daemon(tmp_path, config, None, "--simulate-button") as d:
        await d.note("READY=1")
        await d.log_line("button.simulated")
        assert not sim.connections  # push-to-talk: nothing is open (or billed) before a press
        assert d.proc.stdin is not None
        d.proc.stdin.write(b"\n")  # press: talk
        await d.stdin_drain()
        first = await sim.wait_connection(1, timeout=HANG_GUARD_S)
        await sim.wait_for(lambda: first.user_audio_chunks >= 10, timeout=HANG_GUARD_S)
        d.proc.stdin.write(b"\n")  # release: the mic is gated, silence keeps the socket open
        await d.stdin_drain()
        await sim.wait_for(lambda: first.closed, timeout=HANG_GUARD_S)  # idle close
        assert (first.close_code, first.closed_by) == (1000, "client")
        await d.note("STATUS=idle")
        assert await d.stop() == 0
    log = "\n".join(d.lines)
    assert "session.idle" in log and "Traceback" not in log


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["rollover", "cap_restart"])
async def test_the_rollover_phrase_is_spoken_when_the_session_rolls_over(
    tmp_path: Path, how: str
) -> None:
    # Rollover: one second into the session (cap 30 s, margin 29 s), at a quiet moment. Cap
    # restart: rollover off, the simulator ends the session at its 2 s cap.
    cap_s = 600.0 if how == "rollover" else 2.0
    simulator = Simulator(SimConfig(first_message="", max_duration_s=cap_s, ping_interval_s=0.5))
    await simulator.start()
    try:
        with wave.open(str(tmp_path / "in.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(silence(30.0).astype("<i2").tobytes())
        config = _config(
            tmp_path,
            simulator.url,
            extra="announcements:\n  rollover: Starting a new session.\n",
        )
        rollover = (
            "  rollover: true\n  max_duration_s: 30\n  rollover_margin_s: 29\n"
            if how == "rollover"
            else "  rollover: false\n"
        )
        config.write_text(
            config.read_text().replace("  mode: always_on\n", "  mode: always_on\n" + rollover)
        )
        async with run_daemon(tmp_path, config) as d:
            await d.note("READY=1")
            line = await d.log_line("announcement event=rollover")
            assert "source=tone" in line  # no API key here: the fallback tone
            state = await d.log_line("reason=rollover")
            assert "conversation_id=conv_sim_2" in state
            assert await d.stop() == 0
    finally:
        await simulator.stop()
    log = "\n".join(d.lines)
    assert "Traceback" not in log
