"""Phone bridge under 4 concurrent calls: CPU per call-minute, RSS per call, added latency.

`voicebox phone` runs as its own process (measured with psutil); the convai simulator (the
agent, ulaw_8000) and the Twilio fake (4 callers speaking in real time, Twilio's playout with
marks) run in this one. Each caller takes TURNS turns (1.5 s of speech, the answer heard out);
after the last the agent says goodbye and ends the call, which the bridge completes over REST.
Latency is what the bridge adds, from its own call.ended log line: caller audio in (Twilio frame
received) to user_audio_chunk written to the convai socket, and agent audio in (`play()`) to the
media frame written to Twilio; the convai frame's JSON/base64 decode before `play()` is not in it.
Usage: .venv/bin/python bench/bench_phone.py [--quick] [--calls N] [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.phone.rig import ACCOUNT, TOKEN, free_port  # noqa: E402
from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402
from voicebox.simulator.twilio import FakeCall, TwilioFake  # noqa: E402
from voicebox.simulator.voice import speech_like  # noqa: E402

FIELD = re.compile(r"(\w+)=(\S+)")


def fields(line: str) -> dict[str, str]:
    return dict(FIELD.findall(line))


class Bridge:
    """`voicebox phone` in a child process; its stderr lines are kept."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.pid)
        self.lines: list[str] = []
        self.listening = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if "phone.listening" in text:
                self.listening.set()

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20


async def start_bridge(tmp: Path, sim: Simulator, fake: TwilioFake) -> tuple[Bridge, int]:
    port = free_port()
    cfg = tmp / "config.yaml"
    cfg.write_text(
        f"agent:\n  agent_id: bench\n  api_base: {sim.url}\n"
        "conversation:\n  rollover: false\n"
        f"phone:\n  enabled: true\n  listen_port: {port}\n  max_calls: 8\n"
        f"  public_url: http://127.0.0.1:{port}\n  account_sid: {ACCOUNT}\n"
        f"  api_base: {fake.api_base}\n"
        f"paths:\n  state_dir: {tmp}/state\n  runtime_dir: {tmp}\n"
    )
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "RUNTIME_DIRECTORY": str(tmp)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "phone", "--config", str(cfg),
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    bridge = Bridge(proc)
    await asyncio.wait_for(bridge.listening.wait(), 30)
    return bridge, port


async def caller(fake: TwilioFake, sim: Simulator, call: FakeCall, turns: int) -> None:
    """Listen to the greeting, then take `turns` turns, each answer heard out."""
    await fake.wait_for(lambda: call.heard_s() > 0.5, 20)
    for _ in range(turns):
        await fake.wait_for(lambda: not call.heard or call.heard[-1][0] < time.monotonic() - 0.4)
        if call.stopped.is_set():
            return
        call.say(speech_like(1.5, 8000))
        heard = call.heard_s()
        await fake.wait_for(lambda h=heard: call.heard_s() > h + 0.5 or call.stopped.is_set(), 30)
    await asyncio.wait_for(call.stopped.wait(), 60)


async def bench(calls: int, turns: int) -> dict[str, object]:
    sim = Simulator(
        SimConfig(
            output_format="ulaw_8000",
            input_format="ulaw_8000",
            end_call_after_turns=turns,
            ping_interval_s=2.0,
        )
    )
    await sim.start()
    fake = TwilioFake(ACCOUNT, TOKEN)
    await fake.start()
    with tempfile.TemporaryDirectory() as tmpdir:
        bridge, port = await start_bridge(Path(tmpdir), sim, fake)
        url = f"http://127.0.0.1:{port}/twilio/voice"
        try:
            # Warm-up: one short call (imports, first connections), hung up after the greeting.
            warm = await fake.incoming_call(url)
            await fake.wait_for(lambda: warm.heard_s() > 0.5, 20)
            warm.hang_up()
            await warm.stopped.wait()
            await asyncio.sleep(1.0)
            rss_idle = bridge.rss_mb()
            cpu0, t0 = bridge.cpu_s(), time.monotonic()
            fakes = [await fake.incoming_call(url) for _ in range(calls)]
            rss_peak = rss_idle
            tasks = [asyncio.create_task(caller(fake, sim, c, turns)) for c in fakes]
            while not all(t.done() for t in tasks):
                rss_peak = max(rss_peak, bridge.rss_mb())
                await asyncio.sleep(0.5)
            for task in tasks:
                task.result()
            cpu1, t1 = bridge.cpu_s(), time.monotonic()
            await asyncio.sleep(0.5)
        finally:
            if bridge.proc.returncode is None:
                bridge.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bridge.proc.wait(), 30)
            await asyncio.wait_for(bridge.reader, 5)
            await fake.stop()
            await sim.stop()
    ended = [fields(line) for line in bridge.lines if "call.ended" in line]
    ended = [e for e in ended if e.get("by") == "agent"]
    call_minutes = sum(float(e["duration_s"]) for e in ended) / 60
    gaps = [
        (c.completed_by_rest_at - c.marks_echoed[-1][1]) * 1000
        for c in fakes
        if c.completed_by_rest_at is not None and c.marks_echoed
    ]

    def stat(key: str) -> tuple[float, float]:
        values = [float(e[key]) for e in ended if key in e]
        return (statistics.median(values), max(values)) if values else (float("nan"),) * 2

    return {
        "calls": calls,
        "completed": len(ended),
        "turns": turns,
        "window_s": t1 - t0,
        "call_minutes": call_minutes,
        "cpu_per_call_min": (cpu1 - cpu0) / call_minutes if call_minutes else float("nan"),
        "rss_idle": rss_idle,
        "rss_per_call": (rss_peak - rss_idle) / calls,
        "in_p50": stat("caller_to_agent_p50_ms"),
        "in_p99": stat("caller_to_agent_p99_ms"),
        "out_p50": stat("agent_to_caller_p50_ms"),
        "out_p99": stat("agent_to_caller_p99_ms"),
        "gap": (statistics.median(gaps), max(gaps)) if gaps else (float("nan"),) * 2,
        "stale": sum(c.stale_heard for c in fakes),
        "open_sessions": sum(1 for c in sim.connections if c.live),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer turns per call")
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--turns", type=int, default=None)
    args = parser.parse_args()
    turns = args.turns or (3 if args.quick else 12)
    r = asyncio.run(bench(args.calls, turns))
    print(f"Phone bridge: {r['calls']} concurrent calls, {turns} turns each, ulaw_8000 agent")
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| calls completed by end_call (REST) | {r['completed']} of {r['calls']} |")
    print(f"| call-minutes measured | {r['call_minutes']:.2f} in {r['window_s']:.0f} s |")
    cpu = float(r["cpu_per_call_min"])  # type: ignore[arg-type]
    print(
        f"| CPU per call-minute (bridge process) | {cpu:.2f} s ({cpu / 60 * 100:.1f} % of a core) |"
    )
    print(f"| RSS idle (after one warm-up call) | {r['rss_idle']:.1f} MB |")
    print(f"| RSS per concurrent call (peak - idle) / calls | {r['rss_per_call']:.2f} MB |")
    for label, key in (
        ("caller audio in -> user_audio_chunk out", "in"),
        ("agent audio in -> media frame out", "out"),
    ):
        p50, p99 = r[f"{key}_p50"], r[f"{key}_p99"]
        assert isinstance(p50, tuple) and isinstance(p99, tuple)
        print(f"| {label}, p50 / p99 ms (median of calls) | {p50[0]:.3f} / {p99[0]:.3f} |")
    gap = r["gap"]
    assert isinstance(gap, tuple)
    print(f"| last mark -> REST completion, median / max ms | {gap[0]:.1f} / {gap[1]:.1f} |")
    print(f"| stale agent frames heard after a clear | {r['stale']} |")
    print(f"| convai sessions left open | {r['open_sessions']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
