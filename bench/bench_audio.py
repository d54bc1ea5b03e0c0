"""Audio engine figures: hand-off latency, interrupt-to-silence, CPU and memory of full duplex.

Runs without a sound card: the file devices are paced by a monotonic clock like a real device.
Usage: bench_audio.py [--quick] [--minutes M]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebox.audio.capture import Capture  # noqa: E402
from voicebox.audio.engine import AudioEngine  # noqa: E402
from voicebox.audio.files import PeriodClock  # noqa: E402
from voicebox.audio.formats import AudioFormat  # noqa: E402
from voicebox.audio.playback import Playback  # noqa: E402
from voicebox.config import AudioConfig, InputConfig, OutputConfig  # noqa: E402

PERIOD_MS = 20


async def handoff(blocks: int) -> list[float]:
    """A paced device thread hands 20 ms blocks to the loop; returns each hand-off delay (ms)."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    def on_chunk(chunk: np.ndarray) -> None:
        lags.append(cap.last_handoff_ms)
        if len(lags) >= blocks:
            done.set()

    cap = Capture(loop, on_chunk, 48000, 16000, PERIOD_MS, 1000)
    block = np.zeros(960, dtype=np.int16)
    stop = threading.Event()

    def device() -> None:
        clock = PeriodClock(PERIOD_MS / 1000)
        while not stop.is_set():
            for _ in range(clock.due()):
                cap.on_block(block)
            clock.wait(stop)

    async def busy_loop() -> None:  # other loop work, like the websocket session's
        while not done.is_set():
            sum(range(2000))
            await asyncio.sleep(0.002)

    th = threading.Thread(target=device, daemon=True)
    th.start()
    load = asyncio.create_task(busy_loop())
    await asyncio.wait_for(done.wait(), blocks * PERIOD_MS / 1000 * 3 + 10)
    stop.set()
    await load
    th.join()
    return lags[5:]  # skip the resampler's start-up


def interrupt_to_silence(trials: int) -> list[float]:
    """Time from interrupt() to the first device period that is silent (ms)."""
    pb = Playback(48000, ring_ms=10000, prebuffer_ms=0)
    out = np.zeros(960, dtype=np.int16)
    silent_at: list[float] = []
    stop = threading.Event()

    def device() -> None:
        clock = PeriodClock(PERIOD_MS / 1000)
        while not stop.is_set():
            for _ in range(clock.due()):
                pb.fill(out)
                if not out.any():
                    silent_at.append(time.monotonic())
            clock.wait(stop)

    th = threading.Thread(target=device, daemon=True)
    th.start()
    tone = np.full(48000 * 2, 1000, dtype=np.int16).tobytes()
    results = []
    rng = np.random.default_rng(1)
    for _ in range(trials):
        pb.play(tone)
        time.sleep(0.1 + rng.uniform(0, PERIOD_MS / 1000))  # interrupt at a random phase
        n = len(silent_at)
        t0 = time.monotonic()
        pb.interrupt()
        while len(silent_at) == n:
            time.sleep(0.0005)
        results.append((silent_at[n] - t0) * 1000)
    stop.set()
    th.join()
    return results


def write_input(path: Path, seconds: float) -> None:
    t = np.arange(int(48000 * seconds)) / 48000
    x = (np.sin(2 * np.pi * 300 * t) * 6000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(x.tobytes())


async def duplex(seconds: float, tmp: Path) -> dict[str, float]:
    """Full duplex on 48 kHz file devices: mic resampled to 16 kHz, replies of pcm_16000
    arriving faster than real time, resampled to 48 kHz and played with 3 s replies + pauses."""
    write_input(tmp / "in.wav", 10)
    cfg = AudioConfig(
        InputConfig(backend="file", path=str(tmp / "in.wav"), loop=True),
        OutputConfig(backend="file", path=str(tmp / "out.wav"), sample_rate=48000),
    )
    engine = AudioEngine(cfg)
    chunks = 0

    def on_chunk(c: np.ndarray) -> None:
        nonlocal chunks
        chunks += 1

    engine.set_output_format(AudioFormat.parse("pcm_16000"))
    await engine.start(on_chunk)
    proc = psutil.Process()
    t = np.arange(640) / 16000
    piece = (np.sin(2 * np.pi * 500 * t) * 5000).astype("<i2").tobytes()  # 40 ms
    warm = min(10.0, seconds / 4)
    start = time.monotonic()
    rss0 = cpu0 = 0.0
    warmed = False
    while (now := time.monotonic()) - start < seconds:
        if not warmed and now - start >= warm:
            warmed = True
            rss0, cpu0, t0 = proc.memory_info().rss, time.process_time(), now
        for _ in range(75):  # a 3 s reply sent at 2x real time
            engine.play(piece)
            await asyncio.sleep(0.02)
        engine.end_reply()
        await engine.drain(10)
        await asyncio.sleep(0.5)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    rss1 = proc.memory_info().rss
    stats = engine.stats()
    await engine.stop()
    return {
        "seconds": time.monotonic() - start,
        "cpu_per_min": cpu / wall * 60,
        "rss_growth_mb": (rss1 - rss0) / 1e6,
        "rss_mb": rss1 / 1e6,
        "underruns": stats.underruns,
        "dropped": stats.dropped_chunks,
        "overflows": stats.ring_overflows,
        "chunks": chunks,
    }


async def feeder_baseline(seconds: float) -> float:
    """CPU s/min of the same feeding cadence without the engine (subtracted from duplex)."""
    start = time.monotonic()
    cpu0 = time.process_time()
    while time.monotonic() - start < seconds:
        for _ in range(75):
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5 + 0.5)  # the reply plays out, then the pause
    return (time.process_time() - cpu0) / (time.monotonic() - start) * 60


PORTAUDIO_CHILD = """
import asyncio, sys, time
import numpy as np
from voicebox.audio.engine import AudioEngine
from voicebox.config import AudioConfig, InputConfig, OutputConfig

async def main(seconds):
    cfg = AudioConfig(InputConfig(sample_rate=48000), OutputConfig(sample_rate=48000))
    engine = AudioEngine(cfg)
    await engine.start(lambda c: None)
    reply = np.full(16000, 900, dtype="<i2").tobytes()
    cpu0, t0 = time.process_time(), time.monotonic()
    pb, cap = engine._playback, engine._capture
    o0, i0 = pb.callbacks, cap.callbacks
    while time.monotonic() - t0 < seconds:
        if pb.ring.available < 48000:
            engine.play(reply)
        await asyncio.sleep(0.01)
    cpu = time.process_time() - cpu0
    audio = min(pb.callbacks - o0, cap.callbacks - i0) * 960 / 48000
    await engine.stop()
    print(cpu / audio * 60)

asyncio.run(main(float(sys.argv[1])))
"""


def portaudio_null_cpu(seconds: float) -> float | None:
    """CPU s per minute of duplex audio through PortAudio's ALSA null device (not paced: the
    device runs as fast as the callbacks allow, so this is the per-callback cost)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, ".asoundrc").write_text("pcm.!default { type null }\n")
        proc = subprocess.run(
            [sys.executable, "-c", PORTAUDIO_CHILD, str(seconds)],
            env={**os.environ, "HOME": tmp},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parent.parent,
        )
    if proc.returncode != 0:
        print(f"(PortAudio null device unavailable: {proc.stderr.strip()[-200:]})", file=sys.stderr)
        return None
    return float(proc.stdout.strip().splitlines()[-1])


FILE_INPUT_CHILD = """
import asyncio, resource, sys, time
import psutil
from voicebox.audio.engine import AudioEngine
from voicebox.config import AudioConfig, InputConfig, OutputConfig

async def main(path, out, seconds):
    cfg = AudioConfig(
        InputConfig(backend="file", path=path), OutputConfig(backend="file", path=out)
    )
    engine = AudioEngine(cfg)
    await engine.start(lambda c: None)
    started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await asyncio.sleep(seconds)
    steady = psutil.Process().memory_info().rss / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await engine.stop()
    print(started, steady, peak)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def file_input_rss(wav_seconds: float, run_seconds: float, tmp: Path) -> tuple[float, float]:
    """Peak and steady RSS (MB) of a process running the engine on a 16 kHz file input WAV of
    this length (the file is read as the clock asks, so both should not depend on it)."""
    path = tmp / f"in-{wav_seconds:.0f}s.wav"
    second = (np.random.default_rng(0).standard_normal(16000) * 3000).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        for _ in range(int(wav_seconds)):
            w.writeframes(second)
    proc = subprocess.run(
        [sys.executable, "-c", FILE_INPUT_CHILD, str(path), str(tmp / "out.wav"), str(run_seconds)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    )
    path.unlink()
    _, steady, peak = (float(v) for v in proc.stdout.split())
    return peak, steady


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--minutes", type=float, default=None, help="duplex run length")
    args = parser.parse_args()
    minutes = args.minutes if args.minutes is not None else (0.25 if args.quick else 1.0)
    blocks = 150 if args.quick else 500
    lags = asyncio.run(handoff(blocks))
    cuts = interrupt_to_silence(10 if args.quick else 30)
    with tempfile.TemporaryDirectory() as tmp:
        d = asyncio.run(duplex(minutes * 60, Path(tmp)))
    base = asyncio.run(feeder_baseline(min(20.0, minutes * 60 / 2)))
    engine_cpu = max(0.0, d["cpu_per_min"] - base)
    pa_cpu = portaudio_null_cpu(3 if args.quick else 10)
    with tempfile.TemporaryDirectory() as tmp:
        run_s = 3 if args.quick else 10
        short_rss = file_input_rss(10, run_s, Path(tmp))
        long_rss = file_input_rss(30 * 60, run_s, Path(tmp))
    print(f"## Audio engine (file devices, 20 ms periods, {os.cpu_count()} CPUs)")
    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    n = len(lags)
    print(f"| capture hand-off p50 ({n} blocks) | {pct(lags, 50):.2f} ms | |")
    print(f"| capture hand-off p99 | {pct(lags, 99):.2f} ms | <= 5 ms |")
    print(
        f"| interrupt to silence, max of {len(cuts)} (p50 {pct(cuts, 50):.1f} ms) "
        f"| {max(cuts):.1f} ms | <= {PERIOD_MS + 5} ms (one period + 5 ms) |"
    )
    dur = f"{d['seconds'] / 60:.1f} min"
    print(
        f"| engine CPU, full duplex 48 kHz <-> 16 kHz ({dur}; process {d['cpu_per_min']:.2f} "
        f"minus feeder {base:.2f}) | {engine_cpu:.2f} s/min "
        f"({engine_cpu / 60 * 100:.2f} % of a core) | <= 0.6 s/min (1 %) |"
    )
    if pa_cpu is not None:
        print(
            f"| engine CPU per minute of duplex audio via PortAudio ALSA null (48 kHz, 20 ms) "
            f"| {pa_cpu:.3f} s/min ({pa_cpu / 60 * 100:.2f} %) | <= 0.6 s/min (1 %) |"
        )
    print(f"| playback underruns ({dur}) | {d['underruns']:.0f} | 0 |")
    print(
        f"| RSS growth after warm-up ({dur}; RSS {d['rss_mb']:.0f} MB) "
        f"| {d['rss_growth_mb']:+.2f} MB | flat |"
    )
    print(
        f"| file input RSS peak / steady, 10 s vs 30 min 16 kHz WAV "
        f"| {short_rss[0]:.0f} / {short_rss[1]:.0f} MB vs {long_rss[0]:.0f} / {long_rss[1]:.0f} MB "
        f"| independent of the file's length |"
    )
    drops = f"{d['dropped']:.0f} / {d['overflows']:.0f}"
    print(f"| capture chunks dropped / ring overflows | {drops} | 0 / 0 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
