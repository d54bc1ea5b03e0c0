"""Soak: hours of always_on conversation with a short duration cap, hundreds of rollovers.

This process wires what the daemon wires (AudioEngine with file devices, Supervisor) against the
simulator in another process (bench_stress.py --serve, sessions capped at --cap-s). Every
SAMPLE_S it records RSS, Python's allocated blocks and the tracemalloc total; tracemalloc's own
bookkeeping is subtracted from RSS. It reports the slope over the last three quarters of the run
(the last 3 hours of 4; the first quarter warms up) against < 0.05 MB/hour, and, from tracemalloc
snapshots taken between rollovers (after the warm-up, and at the end), the source lines whose
allocations grew most. Not in `make bench` (too long): `make soak`, or --hours 0.2 to try it.
Usage: soak.py [--hours H] [--cap-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stress import free_port, write_user_wav  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLE_S = 10.0
TARGET_MB_PER_HOUR = 0.05
TOP = 8


def slope_mb_per_hour(ts: list[float], mbs: list[float]) -> float:
    if len(ts) < 3:
        return float("nan")
    k, _ = np.polyfit(np.array(ts) / 3600.0, np.array(mbs), 1)
    return float(k)


async def soak(hours: float, cap_s: float, port: int, tmp: Path) -> dict[str, object]:
    import psutil

    from voicebox.audio.engine import AudioEngine
    from voicebox.config import Config, with_changes
    from voicebox.convai.supervisor import Supervisor
    from voicebox.convai.tools import builtin_tools

    mic = tmp / "user.wav"
    write_user_wav(mic)
    cfg: Config = with_changes(
        Config(),
        **{
            "agent.agent_id": "soak",
            "agent.api_base": f"http://127.0.0.1:{port}",
            "conversation.mode": "always_on",
            "conversation.rollover": True,
            "conversation.max_duration_s": int(cap_s),
            "conversation.rollover_margin_s": min(30.0, cap_s / 3),
            "audio.input.backend": "file",
            "audio.input.path": str(mic),
            "audio.input.loop": True,
            "audio.output.backend": "file",
            "audio.output.path": str(tmp / "out.wav"),
        },
    )
    engine = AudioEngine(cfg.audio)
    sup = Supervisor(cfg, engine, None, builtin_tools(engine), lambda s, f: None)
    await engine.start(sup.on_mic_chunk)
    task = asyncio.create_task(sup.run())
    proc = psutil.Process()
    seconds = hours * 3600
    warm = seconds / 4
    ts: list[float] = []
    rss: list[float] = []
    blocks: list[int] = []
    traced: list[float] = []
    warm_file = tmp / "warm.snapshot"  # on disk: held in memory it would be what grows
    have_warm = False
    t0 = time.monotonic()
    rollovers_at_warm = 0
    while (now := time.monotonic() - t0) < seconds:
        await asyncio.sleep(SAMPLE_S)
        now = time.monotonic() - t0
        overhead = tracemalloc.get_tracemalloc_memory()
        ts.append(now)
        rss.append((proc.memory_info().rss - overhead) / 2**20)
        blocks.append(sys.getallocatedblocks())
        traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
        if not have_warm and now >= warm:
            tracemalloc.take_snapshot().dump(str(warm_file))  # noqa: ASYNC240 - once, small
            have_warm = True
            rollovers_at_warm = sup.snapshot()["counters"]["rollovers"]
    snap_end = tracemalloc.take_snapshot()
    counters = sup.snapshot()["counters"]
    await sup.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await engine.stop()
    late = [i for i, t in enumerate(ts) if t > warm + SAMPLE_S]  # after the warm snapshot
    growth: list[str] = []
    if have_warm:
        snap_warm = tracemalloc.Snapshot.load(str(warm_file))  # noqa: ASYNC240
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = snap_end.filter_traces(filters).compare_to(
            snap_warm.filter_traces(filters), "lineno"
        )
        for st in stats[:TOP]:
            frame = st.traceback[0]
            growth.append(
                f"{st.size_diff / 1024:+.1f} KiB ({st.count_diff:+d} blocks) "
                f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
            )
    return {
        "hours": round((ts[-1] if ts else 0) / 3600, 2),
        "rollovers": counters["rollovers"],
        "rollovers_late": counters["rollovers"] - rollovers_at_warm,
        "sessions": counters["sessions"],
        "turns": counters["turns"],
        "reconnects": counters["reconnects"],
        "rss": (rss[0], rss[late[0]] if late else rss[-1], rss[-1]) if rss else None,
        "blocks": (blocks[0], blocks[late[0]] if late else blocks[-1], blocks[-1]),
        "slope_rss": slope_mb_per_hour([ts[i] for i in late], [rss[i] for i in late]),
        "slope_traced": slope_mb_per_hour([ts[i] for i in late], [traced[i] for i in late]),
        "slope_blocks": slope_mb_per_hour([ts[i] for i in late], [blocks[i] / 1e6 for i in late]),
        "growth": growth,
        "series": [(round(t), round(m, 2), b) for t, m, b in zip(ts, rss, blocks, strict=True)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--cap-s", type=float, default=20.0, help="the simulator's session cap")
    args = parser.parse_args()
    port = free_port()
    tracemalloc.start(1)
    sim = subprocess.Popen(
        [sys.executable, str(HERE / "bench_stress.py"), "--serve", str(port)]
        + ["--max-duration-s", str(args.cap_s), "--lead-s", "0.25"],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2.0)
        with tempfile.TemporaryDirectory(prefix="vb-soak-") as tmp:
            r = asyncio.run(soak(args.hours, args.cap_s, port, Path(tmp)))
    finally:
        sim.terminate()
        sim.wait(timeout=20)
    rss = r["rss"]
    assert isinstance(rss, tuple)
    b = r["blocks"]
    assert isinstance(b, tuple)
    slope = float(r["slope_rss"])  # type: ignore[arg-type]
    met = "yes" if slope < TARGET_MB_PER_HOUR else "**no**"
    print(f"Soak: {r['hours']} h of always_on conversation, sessions capped at {args.cap_s:g} s")
    print()
    print(
        f"{r['rollovers']} rollovers ({r['rollovers_late']} after the warm-up), "
        f"{r['sessions']} sessions, {r['turns']} transcript lines, {r['reconnects']} reconnects. "
        "Slopes are least-squares fits over the last three quarters of the run."
    )
    print()
    print("| figure | value | target | met |")
    print("|---|---|---|---|")
    print(
        f"| RSS at the start / after the warm-up / end, MB (tracemalloc's own memory "
        f"subtracted) | {rss[0]:.1f} / {rss[1]:.1f} / {rss[2]:.1f} | | |"
    )
    print(f"| RSS slope | {slope:+.3f} MB/hour | < {TARGET_MB_PER_HOUR} MB/hour | {met} |")
    print(f"| Python heap (tracemalloc) slope | {float(r['slope_traced']):+.3f} MB/hour | | |")  # type: ignore[arg-type]
    print(
        f"| Python's allocated blocks, start / warm / end | {b[0]} / {b[1]} / {b[2]} "
        f"({float(r['slope_blocks']) * 1e6:+.0f} per hour) | | |"  # type: ignore[arg-type]
    )
    print()
    print("Largest allocation growth between a snapshot after the warm-up and the end:")
    print()
    for line in r["growth"] or ["(no snapshot: run shorter than the warm-up)"]:  # type: ignore[attr-defined]
        print(f"- {line}")
    print()
    print("Samples (s, RSS MB, blocks):", " ".join(f"{t}:{m}:{b}" for t, m, b in r["series"]))  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
