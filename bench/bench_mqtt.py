"""Home Assistant over MQTT: what the link costs and how fast state reaches the broker.

- In process: MqttLink against a real mosquitto on 127.0.0.1; the time from refresh() (the
  daemon's state change) to the subscriber receiving the message, over N changes.
- Through the daemon: `voicebox run` (file audio, always_on, the simulator) for --seconds with
  mqtt.enabled true and false: its CPU time (user+sys, from /proc, so the whole process), the
  messages it published, and the round trip of cmd/volume to the published volume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon.test_daemon import KEY, _config, _input_wav  # noqa: E402
from tests.mqtt.broker import Broker, recording  # noqa: E402
from voicebox.config import MqttConfig  # noqa: E402
from voicebox.mqtt.discovery import Device  # noqa: E402
from voicebox.mqtt.link import MqttLink  # noqa: E402
from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def link_latency(broker: Broker, changes: int) -> list[float]:
    """ms from refresh() to the subscriber's receipt, one change at a time."""
    values = {"state": "idle"}
    link = MqttLink(
        MqttConfig(enabled=True, host="127.0.0.1", port=broker.plain),
        None, Device("bench", "0", "bench"), lambda: dict(values), lambda c: None,
    )  # fmt: skip
    task = asyncio.create_task(link.run())
    out: list[float] = []
    try:
        while not link.connected:  # noqa: ASYNC110 - polled
            await asyncio.sleep(0.01)
        async with recording(broker.plain, "voicebox/bench/state") as rec:
            await rec.until("voicebox/bench/state", "idle")
            for n in range(changes):
                seen = len(rec.messages)
                values["state"] = f"s{n}"
                t0 = time.perf_counter()
                link.refresh()
                while len(rec.messages) == seen:  # noqa: ASYNC110 - polled
                    await asyncio.sleep(0)
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


def _cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def daemon_run(
    tmp: Path, broker: Broker, mqtt: bool, commands: bool, seconds: float
) -> dict[str, Any]:
    """One `voicebox run` for `seconds`: CPU, messages published, volume round trips."""
    sim = Simulator(SimConfig(api_key=KEY, first_message="Hello there, how can I help you today?"))
    await sim.start()
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before the daemon starts
    _input_wav(tmp / "in.wav")
    extra = f"mqtt: {{enabled: {str(mqtt).lower()}, host: 127.0.0.1, port: {broker.plain}}}\n"
    config = _config(tmp, sim.url, extra + "announcements: {enabled: false}\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "run", "--config", str(config),
        stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    node = socket.gethostname().split(".")[0].lower()
    trips: list[float] = []
    try:
        async with (
            recording(broker.plain, "voicebox/#") as rec,
            aiomqtt.Client("127.0.0.1", broker.plain) as commander,
        ):
            await sim.wait_connection(1, timeout=30)
            if mqtt:
                await rec.until(f"voicebox/{node}/availability", "online")
            await asyncio.sleep(1.0)  # the first publishes are in
            start, cpu0 = time.monotonic(), _cpu_s(proc.pid)
            seen0 = len(rec.messages)
            level = 60
            while time.monotonic() - start < seconds:
                await asyncio.sleep(1.0)
                if commands:  # one a second: a busy automation, not a quiet house
                    level = 60 if level != 60 else 61
                    t0 = time.perf_counter()
                    await commander.publish(f"voicebox/{node}/cmd/volume", str(level), qos=1)
                    with contextlib.suppress(TimeoutError):
                        await rec.until_after(f"voicebox/{node}/volume", str(level), t0)
                        trips.append((time.perf_counter() - t0) * 1000)
            cpu = _cpu_s(proc.pid) - cpu0
            elapsed = time.monotonic() - start
            messages = sum("/cmd/" not in t for t, _, _ in rec.messages[seen0:])
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        await sim.stop()
    return {"cpu_s": cpu, "seconds": elapsed, "messages": messages, "trips": trips}


async def bench(quick: bool, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        broker = Broker(tmp / "broker")
        broker.start()
        try:
            lat = await link_latency(broker, 100 if quick else 500)
            off = await daemon_run(tmp / "off", broker, False, False, seconds)
            on = await daemon_run(tmp / "on", broker, True, False, seconds)
            busy = await daemon_run(tmp / "busy", broker, True, True, seconds)
        finally:
            broker.stop()
    print("# Home Assistant over MQTT (a real mosquitto on 127.0.0.1)")
    print()
    print(f"A `voicebox run` in always_on for {on['seconds']:.0f} s of conversation with the")
    print("simulator, MQTT off, on, and on with one cmd/volume a second (a busy automation;")
    print("each change also plays the short volume tone).")
    print()
    print("| figure | MQTT off | MQTT on | on, 1 command/s |")
    print("|---|---|---|---|")
    cpu = [r["cpu_s"] / r["seconds"] * 100 for r in (off, on, busy)]
    print(f"| daemon CPU, % of one core | {cpu[0]:.2f} | {cpu[1]:.2f} ({cpu[1] / cpu[0]:.2f}x) | "
          f"{cpu[2]:.2f} ({cpu[2] / cpu[0]:.2f}x) |")  # fmt: skip
    rates = [r["messages"] / r["seconds"] * 60 for r in (on, busy)]
    print(f"| messages published, per minute | 0 | {rates[0]:.0f} | {rates[1]:.0f} |")
    trips = busy["trips"]
    if trips:
        p50, p99 = statistics.median(trips), pct(trips, 99)
        print(f"| cmd/volume to published volume, p50 / p99 ms | - | - | {p50:.1f} / {p99:.1f} |")
    print()
    print("| state change (refresh) to subscriber, in process | p50 ms | p99 ms | max ms | n |")
    print("|---|---|---|---|---|")
    print(f"| MqttLink -> mosquitto -> subscriber | {statistics.median(lat):.2f} | "
          f"{pct(lat, 99):.2f} | {max(lat):.2f} | {len(lat)} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=None, help="each daemon run (30; 12)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    seconds = args.seconds or (12.0 if args.quick else 30.0)
    asyncio.run(bench(args.quick, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
