"""Time to first audio of an announcement: from the phrase cache vs a live synthesis.

Both run through `Announcer.announce()` into a port that timestamps the first `play()`; the live
case synthesises against the simulator's stream-input endpoint on loopback (a fresh, empty cache
each run), so it measures our client and protocol overhead, not the service's generation time.
Usage: .venv/bin/python bench/bench_tts.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.server import serve  # noqa: E402

from voicebox.announcements import Announcer  # noqa: E402
from voicebox.audio.formats import PCM_16000, AudioFormat  # noqa: E402
from voicebox.config import Config, Secret, with_changes  # noqa: E402
from voicebox.simulator.tts import serve_tts  # noqa: E402

KEY = "sk_bench_0123456789"


class _Sim:
    api_key = KEY


class FirstPlayPort:
    """Just enough of an AudioPort: records when the first audio is queued."""

    input_format = PCM_16000

    def __init__(self) -> None:
        self.first_play: float | None = None

    def set_output_format(self, fmt: AudioFormat) -> None:
        pass

    def play(self, data: bytes) -> None:
        if self.first_play is None:
            self.first_play = time.perf_counter()

    def end_reply(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    @property
    def playing(self) -> bool:
        return False

    async def drain(self, timeout: float) -> bool:
        return True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(cfg: Config) -> float:
    port = FirstPlayPort()
    announcer = Announcer(cfg, port, Secret(KEY))  # type: ignore[arg-type]
    start = time.perf_counter()
    await announcer.announce("degraded")
    assert port.first_play is not None
    return (port.first_play - start) * 1000


async def bench(runs: int) -> dict[str, list[float]]:
    async def handler(ws: Any) -> None:
        await serve_tts(ws, _Sim())

    results: dict[str, list[float]] = {"cached": [], "synthesised": []}
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            base = with_changes(
                Config(),
                **{"agent.api_base": f"http://127.0.0.1:{port}", "audio.output.sample_rate": 16000},
            )
            warm = with_changes(base, **{"paths.state_dir": f"{tmp}/warm"})
            await one(warm)  # fills the warm cache (and warms imports)
            for i in range(runs):
                cold = with_changes(base, **{"paths.state_dir": f"{tmp}/cold{i}"})
                results["synthesised"].append(await one(cold))
                results["cached"].append(await one(warm))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 30)
    results = asyncio.run(bench(runs))
    p50 = {name: statistics.median(values) for name, values in results.items()}
    print("TTS announcement: time to first audio (loopback simulator, degraded phrase, pcm_16000)")
    print()
    print("| source | runs | p50 ms | p90 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        print(
            f"| {name} | {len(values)} | {p50[name]:.2f} | {percentile(values, 0.9):.2f} "
            f"| {max(values):.2f} |"
        )
    print(f"| synthesised / cached (p50) | | {p50['synthesised'] / p50['cached']:.1f}x | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
