"""Echo cancellation in simulated rooms: ERLE, self-interruptions, barge-in detection, CPU, RSS.

Each room plays minutes of agent replies (the simulator's voice, 20 harmonics) through a room
impulse response into the mic, on the device timeline the tests use (tests/audio/echo_rooms.py:
PortAudio-like stamps, 20 ms blocks, 100 ms output and 30 ms input buffering), and runs the mic
through voicebox's CaptureProcessor. What reaches "the service" is judged by the simulator's own
energy VAD (-40 dBFS, 60 ms to start): a speech start while only the agent talks is a
self-interruption; user bursts spoken over the agent must each start one (barge-in).
The official SDK sends the mic as captured (it has no canceller), so its column is the
unprocessed mic through the same VAD.
Usage: .venv/bin/python bench/bench_echo.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.audio.echo_rooms import RATE, run_room  # noqa: E402
from voicebox.simulator.vad import EnergyVad, SpeechStart  # noqa: E402
from voicebox.simulator.voice import speech_like  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class RoomSpec:
    name: str
    delay_ms: float
    tail_ms: float
    echo_db: float
    direct_db: float | None  # direct path vs reverberant tail; None: tail only


ROOMS = (
    RoomSpec("small", 10.0, 150.0, -12.0, 10.0),
    RoomSpec("large", 60.0, 400.0, -6.0, 0.0),
    RoomSpec("loud", 30.0, 250.0, 0.0, 6.0),
    RoomSpec("reverberant (tail only)", 40.0, 250.0, -6.0, None),
)


def agent_and_user(minutes: float, seed: int = 0) -> tuple[Any, Any, list[tuple[int, int]]]:
    """Agent replies of 1.5-4 s with pauses, and user bursts over about one reply in three."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * RATE)
    far = np.zeros(n)
    near = np.zeros(n)
    bursts: list[tuple[int, int]] = []
    t = 0.5
    k = 0
    while True:
        length = float(rng.uniform(1.5, 4.0))
        if int((t + length + 2.0) * RATE) >= n:
            break
        reply = speech_like(length, RATE, f0=float(rng.uniform(150, 210)), harmonics=20)
        a = int(t * RATE)
        far[a : a + len(reply)] = reply
        if k % 3 == 2:  # the user talks over this one
            at = t + float(rng.uniform(0.4, max(0.5, length - 1.2)))
            burst = speech_like(1.0, RATE, f0=float(rng.uniform(100, 130)), level=0.3)
            b = int(at * RATE)
            near[b : b + len(burst)] += burst
            bursts.append((b, b + len(burst)))
        t += length + float(rng.uniform(0.8, 3.0))
        k += 1
    return far, near, bursts


def vad_starts(x: Any) -> list[int]:
    """Sample indices where the simulator's VAD starts a speech segment."""
    vad = EnergyVad(RATE)
    starts = []
    for i in range(0, len(x) - 320 + 1, 320):
        for ev in vad.feed(np.asarray(x[i : i + 320], dtype=np.int16)):
            if isinstance(ev, SpeechStart):
                starts.append(int(ev.at_s * RATE))
    return starts


def judge(x: Any, bursts: list[tuple[int, int]], minutes_agent: float) -> tuple[float, float]:
    """(self-interruptions per 10 min of agent speech, fraction of bursts detected)."""
    starts = vad_starts(x)
    slack = int(0.7 * RATE)  # the VAD starts within the burst (60 ms in), or its hangover
    detected = sum(any(a <= s <= b + slack for s in starts) for a, b in bursts)
    own = [s for s in starts if not any(a - slack <= s <= b + slack for a, b in bursts)]
    return len(own) * 10.0 / max(minutes_agent, 1e-9), detected / max(1, len(bursts))


def db(x: Any) -> float:
    f = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(f * f) + 1e-9))


RSS_CHILD = """
import numpy as np, psutil
from voicebox.audio.processing import CaptureProcessor, ProcessingSettings, StampedHistory
# the test signal first: numpy.random alone is ~6 MB of RSS, and the daemon never loads it
noise = np.random.default_rng(0).standard_normal(960) * 3000
mic_block, ref_block = noise.astype(np.int16), noise[:882].astype(np.int16)
p = psutil.Process()
before = p.memory_info().rss
mic, ref = StampedHistory(48000, 0), StampedHistory(44100)  # the daemon's: stamps, 2 s
proc = CaptureProcessor(ProcessingSettings(), mic, ref)
for k in range(3000):  # one minute of 20 ms blocks
    ref.write(ref_block, 1.0 + k * 0.02 + 0.13, 1.0 + k * 0.02)
    mic.write(mic_block, 1.0 + k * 0.02, 1.0 + k * 0.02 + 0.05)
    proc.process(mic_block, k * 960)
print((p.memory_info().rss - before) / 2**20)
"""


def rss_added_mb() -> float:
    """RSS a processor adds (library, APM state, resamplers, rings) at 48 kHz mic / 44.1 kHz
    speaker in a fresh process after a minute of audio; the import of numpy and voicebox and
    the test signal before it do not count."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD], capture_output=True, text=True, cwd=root, check=True
    )
    return float(out.stdout.strip())


def plot(room: RoomSpec, far: Any, mic: Any, out: Any, start_s: float, seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = int(start_s * RATE), int((start_s + seconds) * RATE)

    def levels(x: Any) -> Any:
        f = np.asarray(x[a:b], dtype=np.float64)
        f = f[: len(f) // 160 * 160].reshape(-1, 160)
        return 10 * np.log10(np.mean(f * f, axis=1) + 1.0) - 90.3

    t = start_s + np.arange(len(levels(mic))) * 0.01
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(t, levels(far), label="reference (what the speaker played)")
    ax.plot(t, levels(mic), label="mic (echo)")
    ax.plot(t, levels(out), label="processed (sent)")
    ax.axhline(-40, color="grey", linestyle=":", label="simulator VAD threshold")
    ax.set_xlabel("s")
    ax.set_ylabel("dBFS per 10 ms")
    ax.set_ylim(-95, 0)
    ax.set_title(f"{room.name} room: one reply")
    ax.legend(loc="lower right", fontsize=8)
    OUT.mkdir(exist_ok=True)
    path = OUT / "echo_levels.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _direct(room: RoomSpec) -> str:
    return "tail only" if room.direct_db is None else f"{room.direct_db:+.0f} dB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 minute per room instead of 3")
    args = parser.parse_args()
    minutes = 1.0 if args.quick else 3.0
    rows = []
    plotted = ""
    for i, room in enumerate(ROOMS):
        far, near, bursts = agent_and_user(minutes, seed=i)
        agent_minutes = float(np.count_nonzero(np.abs(far) > 0)) / RATE / 60
        common = {
            "delay_ms": room.delay_ms,
            "tail_ms": room.tail_ms,
            "echo_db": room.echo_db,
            "direct_db": room.direct_db,
        }
        # ERLE: far end only, after 10 s of convergence
        solo = run_room(far, None, **common)  # type: ignore[arg-type]
        skip = 10 * RATE
        erle = db(solo.mic[skip:]) - db(solo.out[skip:])
        on = run_room(far, near, **common)  # type: ignore[arg-type]
        wall = len(on.out) / RATE
        off_rate, off_detect = judge(on.mic, bursts, agent_minutes)
        on_rate, on_detect = judge(on.out, bursts, agent_minutes)
        stats = on.processor.snapshot()
        cpu_per_min = stats.cpu_s / (wall / 60)
        rows.append(
            (room, erle, off_rate, on_rate, on_detect, off_detect, cpu_per_min, stats.erle_db)
        )
        if room.name == "small":
            first = int(np.flatnonzero(np.abs(far[15 * RATE :]) > 0)[0]) / RATE + 15
            plotted = str(plot(room, far, solo.mic, solo.out, first - 0.3, 4.5))
    rss_added = rss_added_mb()
    print("# Echo cancellation in simulated rooms (WebRTC AEC3 via pywebrtc-audio, 16 kHz)")
    print()
    header = [
        "room (delay, tail, echo, direct/tail)",
        "ERLE far end only",
        "self-interruptions / 10 min agent speech: off / on / SDK",
        "barge-ins detected: on (off)",
        "processing CPU per minute",
        "share of one core",
        "status ERLE",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for room, erle, off_rate, on_rate, on_detect, off_detect, cpu, status_erle in rows:
        cells = [
            f"{room.name} ({room.delay_ms:.0f} ms, {room.tail_ms:.0f} ms, "
            f"{room.echo_db:+.0f} dB, {_direct(room)})",
            f"{erle:.1f} dB",
            f"{off_rate:.0f} / {on_rate:.0f} / {off_rate:.0f}",
            f"{100 * on_detect:.0f} % ({100 * off_detect:.0f} %)",
            f"{cpu:.2f} s",
            f"{100 * cpu / 60:.2f} %",
            f"{status_erle} dB",
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        f"- {minutes:g} min of audio per room; targets: ERLE >= 30 dB (small), 0 "
        "self-interruptions / 10 min, >= 95 % of barge-ins, <= 1.5 % of one core, RSS + <= 5 MB."
    )
    print(f"- RSS added by the library and one processor (after a minute): {rss_added:.1f} MB")
    print("- CPU: thread CPU time of CaptureProcessor.process (alignment, resampling, AEC3, NS, ")
    print("  meters) over audio time; the daemon's own CPU share is in bench_convai's rows.")
    print("- SDK column: the official SDK sends the mic as captured, so it is the unprocessed mic.")
    print(f"- Plot of mic, reference and processed levels over one reply: {plotted}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
