"""`voicebox run` with mqtt.enabled against a real mosquitto: what Home Assistant sees appears by
itself, each command topic drives the real daemon (announce and volume heard in the output WAV,
start and tell reach the simulator, mute closes the session), a SIGKILL leaves the last will;
and a broker absent at boot, refusing the password, restarted, or moved by a SIGHUP, never
touches the conversation."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.daemon.test_daemon import KEY, _config, _input_wav, run_daemon
from tests.mqtt.broker import PASSWORD, USER, Broker, publish, recording
from tests.mute.test_mute_daemon import _cli
from voicebox import volume
from voicebox.simulator.server import SimConfig, Simulator

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    yield b
    b.stop()


def _frames(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return w.getnframes()


def _loudest_db(path: Path, start: int, end: int) -> float:
    """The loudest 100 ms of frames [start, end) of the output WAV, in dB of full scale."""
    with wave.open(str(path), "rb") as w:
        w.setpos(start)
        pcm = np.frombuffer(w.readframes(end - start), dtype="<i2").astype(np.float64)
        rate = w.getframerate()
    n = len(pcm) // (rate // 10)
    power = (pcm[: n * (rate // 10)].reshape(n, rate // 10) ** 2).mean(axis=1)
    return 10 * math.log10(max(float(power.max()), 1e-9) / 32768**2)


async def _played_out(path: Path, start: int, timeout: float = 15.0) -> float:
    """The loudest 100 ms from frame `start` once what played there has ended (the WAV holds
    sound, then 300 ms of silence): the whole phrase, however late the file is flushed."""
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(0.1)
            end = _frames(path)
            heard = end - start > rate // 2 and _loudest_db(path, start, end) > -60
            if heard and _loudest_db(path, end - int(0.3 * rate), end) < -70:
                return _loudest_db(path, start, end)


def _mqtt(port: int, extra: str = "") -> str:
    return (
        f"mqtt: {{enabled: true, host: 127.0.0.1, port: {port}, username: {USER}, "
        f"node_id: shelf{extra}}}\n"
    )


async def test_home_assistant_drives_the_daemon_and_sees_its_state(
    tmp_path: Path, broker: Broker
) -> None:
    broker.start()
    sim = Simulator(SimConfig(api_key=KEY, first_message="Hello there, how can I help?"))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    extra = "conversation: {mode: push_to_talk}\n" + _mqtt(broker.auth)
    config = _config(tmp_path, sim.url, extra)
    text = config.read_text().replace("conversation:\n  mode: always_on\n", "")
    config.write_text(text)
    env = {"VOICEBOX_MQTT_PASSWORD": PASSWORD, "ELEVENLABS_API_KEY": KEY}
    out = tmp_path / "out.wav"
    base, cmd = "voicebox/shelf", "voicebox/shelf/cmd"
    auth = {"username": USER, "password": PASSWORD}
    try:
        async with (
            recording(broker.auth, "voicebox/#", "homeassistant/#", **auth) as rec,
            run_daemon(tmp_path, config, env) as d,
        ):
            await d.note("READY=1")
            await rec.until(f"{base}/availability", "online")
            await rec.until(f"{base}/state", "idle")
            await rec.until(f"{base}/mode", "push_to_talk")
            configs = [json.loads(p) for t, p, _ in rec.messages if t.endswith("/config") and p]
            assert len(configs) == 16
            assert {c["device"]["name"] for c in configs} == {configs[0]["device"]["name"]}

            # announce, at 100 and then at 40: the same cached phrase, 24 dB apart in the WAV
            levels = []
            for n, level in enumerate((100, 40)):
                if level != 100:
                    await publish(broker.auth, f"{cmd}/volume", str(level), **auth)
                    await rec.until(f"{base}/volume", str(level))
                    await asyncio.sleep(0.6)  # the confirming tone plays out
                start = _frames(out)
                await publish(broker.auth, f"{cmd}/announce", "Dinner is ready.", **auth)
                await _count(d.lines, "announcement event=mqtt", n + 1)
                levels.append(await _played_out(out, start))
            assert levels[0] > -30, "the announcement is heard"
            want = 20 * math.log10(volume.gain(40) / volume.gain(100))
            assert levels[1] - levels[0] == pytest.approx(want, abs=1.0)
            assert any("source=cache" in line for line in d.lines if "event=mqtt" in line)

            # a bad payload: one line, nothing changes
            await publish(broker.auth, f"{cmd}/volume", "loud", **auth)
            await _count(d.lines, "mqtt.command_refused", 1)
            await asyncio.sleep(0.3)
            assert rec.latest(f"{base}/volume") == "40"

            # start opens a conversation with the simulator; tell and context reach it
            await publish(broker.auth, f"{cmd}/start", "PRESS", **auth)
            conn = await sim.wait_connection(1, timeout=30)
            await rec.until(f"{base}/conversation", "ON")
            await rec.until(f"{base}/state", "speaking")
            await publish(broker.auth, f"{cmd}/tell", "what's on today?", **auth)
            await publish(broker.auth, f"{cmd}/context", "the user is in the kitchen", **auth)
            await sim.wait_for(lambda: conn.user_messages and conn.contextual_updates)
            assert conn.user_messages == ["what's on today?"]
            assert conn.contextual_updates[0].text == "the user is in the kitchen"
            await publish(broker.auth, f"{cmd}/end", "PRESS", **auth)
            await sim.wait_for(lambda: conn.closed, timeout=10)
            await rec.until(f"{base}/state", "idle")
            await publish(broker.auth, f"{cmd}/tell", "anyone there?", **auth)
            await _count(d.lines, "no conversation is open", 1)

            # the mode select: always_on opens a session; mute closes it
            await publish(broker.auth, f"{cmd}/mode", "always_on", **auth)
            second = await sim.wait_connection(2, timeout=30)
            await rec.until(f"{base}/mode", "always_on")
            await publish(broker.auth, f"{cmd}/mute", "ON", **auth)
            await sim.wait_for(lambda: second.closed, timeout=10)
            await rec.until(f"{base}/muted", "ON")
            await rec.until(f"{base}/state", "muted")
            sock = str(tmp_path / "run" / "status.sock")
            rc, text, _ = await _cli("status", "--json", "--socket", sock)
            link = json.loads(text)["mqtt"]
            assert link["connected"] is True and link["broker"] == f"127.0.0.1:{broker.auth}"
            assert (tmp_path / "state" / "mode").read_text() == "always_on push_to_talk\n"

            d.proc.send_signal(signal.SIGKILL)  # a power cut, as the broker sees it
            await rec.until(f"{base}/availability", "offline")
            await d.proc.wait()
        assert not any("Traceback" in line for line in d.lines)
        assert PASSWORD not in "\n".join(d.lines)
        assert sum("mqtt.command_refused" in line for line in d.lines) == 2
    finally:
        await sim.stop()


async def _count(lines: list[str], text: str, n: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while sum(text in line for line in lines) < n:  # noqa: ASYNC110 - polled
            await asyncio.sleep(0.05)


async def test_a_broker_late_refusing_restarted_or_moved_never_touches_the_conversation(
    tmp_path: Path, broker: Broker
) -> None:
    sim = Simulator(SimConfig(api_key=KEY, first_message=""))
    await sim.start()
    _input_wav(tmp_path / "in.wav")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("wrong-password\n")
    config = _config(tmp_path, sim.url, _mqtt(broker.auth))  # always_on
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    auth = {"username": USER, "password": PASSWORD}
    sock = str(tmp_path / "run" / "status.sock")
    try:
        async with run_daemon(tmp_path, config, env) as d:
            await d.note("READY=1")  # the broker is not running: the box is up all the same
            first = await sim.wait_connection(1, timeout=30)
            await _count(d.lines, "mqtt.unavailable", 1)
            assert any("is the broker running?" in line for line in d.lines)
            broker.start()  # now it is, but refuses the password: one more line, no more
            await _count(d.lines, "not authorised", 1)
            await asyncio.sleep(3.5)
            assert sum("mqtt.unavailable" in line for line in d.lines) == 2
            rc, text, _ = await _cli("status", "--socket", sock)
            assert "not authorised" in text and re.search(r"mqtt:\n.*\n.*\n\s+connected\s+no", text)
            (creds / "mqtt_password").write_text(PASSWORD + "\n")
            d.proc.send_signal(signal.SIGHUP)  # the fixed credential is read again
            async with recording(broker.auth, "voicebox/shelf/#", **auth) as rec:
                await rec.until("voicebox/shelf/availability", "online")
                await rec.until("voicebox/shelf/state", "listening")
            broker.stop()
            broker.start()  # a restarted broker holds nothing: all of it is published again
            async with recording(broker.auth, "voicebox/#", "homeassistant/#", **auth) as rec:
                await rec.until("voicebox/shelf/availability", "online")
                await rec.until("homeassistant/switch/shelf/mute/config")
                config.write_text(config.read_text().replace("node_id: shelf", "node_id: den"))
                d.proc.send_signal(signal.SIGHUP)  # moved: the old link says offline
                await rec.until("voicebox/shelf/availability", "offline")
                await rec.until("voicebox/den/availability", "online")
                await rec.until("voicebox/den/state", "listening")
            assert not first.closed and len(sim.connections) == 1, "the conversation never noticed"
            assert await d.stop() == 0
        assert not any("Traceback" in line for line in d.lines)
        assert PASSWORD not in "\n".join(d.lines)
    finally:
        await sim.stop()
