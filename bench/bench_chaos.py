"""Chaos: a real `voicebox run` under seeded random faults of every kind, plus SIGHUP reloads.

The daemon runs as a subprocess with file devices in always_on mode; its mic is a looped WAV of
numbered speech bursts (voicebox.simulator.bursts: the number and position ride in each
sample's low bits, 1.2 s every 2.5 s, 20 per 50 s cycle, the cycle told apart by arrival time),
so the mic processing is off: it would rewrite those bits.
The simulator runs in this process with `voicebox.simulator.chaos` applying the schedule of
`--seed`, and decodes every burst it hears. A burst is delivered when >= 80 % of its positions
reached the agent on some session. Fault to next session: from the fault (or the first handshake
it refused) to the first user audio on a later connection; faults that leave the session
working (malformed, interrupt, tool) count as 0 when it stays up. RSS and open fds are read
with psutil, asyncio tasks from the daemon's metrics file. Plot: bench/out/chaos.png.
Usage: bench_chaos.py [--quick] [--seed S] [--faults N] [--minutes M] [--kinds K,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebox.simulator import bursts, chaos  # noqa: E402
from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402
from voicebox.simulator.voice import silence, speech_like  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RATE = 16000
BURST_S, SLOT_S, CYCLE = 1.2, 2.5, 20  # a burst every 2.5 s, 20 bursts per WAV cycle
CYCLE_S = SLOT_S * CYCLE
DELIVERED = 0.8
NEXT_SESSION_TARGET_S = 10.0
KEEPS_SESSION = ("malformed", "interrupt", "tool")
SAMPLE_S = 2.0
TAIL_S = 6.0  # bursts this close to the end are not counted (still in flight)


def write_mic(path: Path) -> None:
    parts = []
    for k in range(1, CYCLE + 1):
        voice = speech_like(BURST_S, RATE, f0=110.0 + 7 * k, level=0.6)
        parts += [bursts.encode_burst(k, voice), silence(SLOT_S - BURST_S)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(parts).astype("<i2").tobytes())


def write_config(tmp: Path, port: int, mode: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: chaos-bench
  api_base: http://127.0.0.1:{port}
audio:
  input: {{backend: file, path: {tmp / "mic.wav"}, loop: true}}
  output: {{backend: file, path: {tmp / "out.wav"}}}
  processing: {{echo_cancellation: "off", noise_suppression: "off", high_pass: false}}
conversation:
  mode: {mode}
gpio:
  button: {{pin: null}}
monitor:
  metrics_path: {tmp / "metrics.prom"}
  metrics_interval_s: 1
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
"""
    )
    return path


def read_metrics(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
    return out


@dataclass
class Run:
    seed: int
    faults: int
    minutes: float
    mode: str
    applied: list[chaos.Applied] = field(default_factory=list)
    hups: list[float] = field(default_factory=list)
    samples: list[tuple[float, float, int, float | None]] = field(default_factory=list)
    t0: float = 0.0  # loop time the daemon was started
    t_end: float = 0.0
    rc: int | None = None
    died_early: bool = False
    log_lines: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    sim: Simulator | None = None


async def run(
    seed: int,
    faults: int,
    minutes: float,
    mode: str,
    kinds: tuple[str, ...],
) -> Run:
    import psutil

    loop = asyncio.get_running_loop()
    result = Run(seed, faults, minutes, mode)
    events = chaos.schedule(chaos.ChaosSpec(seed, faults, minutes), kinds)
    with tempfile.TemporaryDirectory(prefix="voicebox-chaos-") as tmp_name:
        tmp = Path(tmp_name)
        write_mic(tmp / "mic.wav")
        sim = Simulator(SimConfig(count_bursts=True, first_message="", silent_hold_s=30.0))
        result.sim = sim
        port = await sim.start()
        cfg = write_config(tmp, port, mode)
        log_path = tmp / "daemon.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
        with log_path.open("wb") as log_file:  # noqa: ASYNC230 - once, before the run
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "voicebox",
                "run",
                "--config",
                str(cfg),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=log_file,
                env=env,
            )
        result.t0 = loop.time()
        ps = psutil.Process(proc.pid)
        hup_rng = random.Random(seed + 1)
        duration = minutes * 60

        async def hups() -> None:
            while True:
                await asyncio.sleep(hup_rng.uniform(20.0, 80.0))
                if proc.returncode is None:
                    proc.send_signal(signal.SIGHUP)
                    result.hups.append(loop.time() - result.t0)

        async def sampler() -> None:
            while True:
                with contextlib.suppress(psutil.Error):
                    m = read_metrics(tmp / "metrics.prom")
                    result.samples.append(
                        (
                            loop.time() - result.t0,
                            ps.memory_info().rss / 2**20,
                            ps.num_fds(),
                            m.get("voicebox_runtime_tasks"),
                        )
                    )
                await asyncio.sleep(SAMPLE_S)

        tasks = [asyncio.create_task(hups()), asyncio.create_task(sampler())]
        chaos_task = asyncio.create_task(chaos.run_chaos(sim, events, result.applied))
        waiter = asyncio.create_task(proc.wait())
        await asyncio.wait({waiter}, timeout=duration)
        result.t_end = loop.time() - result.t0
        result.died_early = waiter.done()
        result.metrics = read_metrics(tmp / "metrics.prom")
        if not chaos_task.done():
            chaos_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos_task
        for t in tasks:
            t.cancel()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            result.rc = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            result.rc = await proc.wait()
        result.log_lines = log_path.read_text(errors="replace").splitlines()
        await sim.stop()
    return result


# --- analysis --------------------------------------------------------------------------------


@dataclass
class Analysis:
    spoken: int = 0
    delivered: int = 0
    lost: list[tuple[int, float, str]] = field(default_factory=list)  # burst, time, nearest fault
    twice: int = 0  # positions that reached one session twice
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # fault -> next session, s
    kept: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # no next session before the end
    skipped: int = 0
    late: list[tuple[str, float, float]] = field(default_factory=list)  # kind, at, seconds
    sessions: int = 0


def analyse(r: Run) -> Analysis:
    a = Analysis()
    sim = r.sim
    assert sim is not None and sim.bursts is not None
    conns = sim.connections
    a.sessions = sum(1 for c in conns if c.metadata_sent)
    t0 = r.t0
    npos = bursts.positions(round(BURST_S * RATE))
    arrivals = sim.bursts.arrivals
    # when the mic WAV started: the earliest arrival minus its offset in the cycle
    bases = [
        (t - t0) - ((k - 1) * SLOT_S + first * bursts.STEP / RATE)
        for t, _, k, first, _, _ in arrivals
    ]
    start = min(bases[:200]) if bases else 0.0
    seen: dict[int, set[int]] = {}
    per_session: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (_t, conn, k, first, last, _n), base in zip(arrivals, bases, strict=True):
        cycle = math.floor((base - start + 0.25) / CYCLE_S)
        burst = cycle * CYCLE + k
        seen.setdefault(burst, set()).update(range(first, last + 1))
        per_session.setdefault((conn, burst), []).append((first, last))
    for spans in per_session.values():
        spans.sort()
        for (_, l1), (f2, _) in zip(spans, spans[1:], strict=False):
            if f2 <= l1:  # chunks are contiguous: an overlap is a frame sent twice
                a.twice += l1 - f2 + 1
    a.spoken = max(0, math.floor((r.t_end - TAIL_S - start - BURST_S) / SLOT_S) + 1)
    fault_times = [(ap.loop_time - t0, ap.kind) for ap in r.applied if ap.connection]
    for b in range(1, a.spoken + 1):
        if len(seen.get(b, ())) >= DELIVERED * npos:
            a.delivered += 1
            continue
        at = start + (b - 1) * SLOT_S
        near = min(fault_times, key=lambda f: abs(f[0] - at), default=None)
        where = f"{near[1]} at {near[0]:.0f} s ({near[0] - at:+.1f} s)" if near else "no fault"
        a.lost.append((b, at, where))
    # fault -> next working session
    for ap in r.applied:
        kind = ap.kind
        if ap.connection is None:
            a.skipped += 1
            continue
        hit = ap.connection
        tf = ap.loop_time
        if kind.startswith("http:"):
            refused = [c for c in conns if c.index >= hit and c.http_status is not None]
            if not refused:
                a.pending[kind] = a.pending.get(kind, 0) + 1
                continue
            tf = max(tf, refused[0].opened_at)
            later = [c for c in conns if c.index > refused[0].index and c.http_status is None]
        else:
            rec = conns[hit - 1]
            if kind in KEEPS_SESSION and (rec.closed_at is None or rec.closed_at > tf + 2.0):
                a.kept[kind] = a.kept.get(kind, 0) + 1
                a.by_kind.setdefault(kind, []).append(0.0)
                continue
            later = [c for c in conns if c.index > hit]
        nxt = next((c for c in later if c.first_audio_at is not None), None)
        if nxt is None or nxt.first_audio_at is None:
            a.pending[kind] = a.pending.get(kind, 0) + 1
            continue
        dt = max(0.0, nxt.first_audio_at - tf)
        a.by_kind.setdefault(kind, []).append(dt)
        if dt > NEXT_SESSION_TARGET_S:
            a.late.append((kind, tf - t0, dt))
    return a


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def at_fraction(r: Run, f: float) -> tuple[float, float, int, float | None] | None:
    if not r.samples:
        return None
    target = f * r.t_end
    return min(r.samples, key=lambda s: abs(s[0] - target))


def second_half_growth(r: Run) -> float:
    half = [s for s in r.samples if s[0] >= r.t_end / 2]
    if len(half) < 4:
        return float("nan")
    q = max(1, len(half) // 10)  # medians of the first and last tenth: not one noisy sample
    return statistics.median(s[1] for s in half[-q:]) - statistics.median(s[1] for s in half[:q])


def plot(r: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = r.sim
    assert sim is not None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    kinds = sorted({a.kind for a in r.applied})
    for i, kind in enumerate(kinds):
        ts = [a.loop_time - r.t0 for a in r.applied if a.kind == kind]
        ax1.scatter(ts, [i] * len(ts), marker="x", s=30)
    ax1.set_yticks(range(len(kinds)), kinds, fontsize=7)
    for c in sim.connections:
        if c.metadata_at is not None:
            end = (c.closed_at if c.closed_at is not None else r.t0 + r.t_end) - r.t0
            ax1.plot([c.metadata_at - r.t0, end], [-1 - (c.index % 3) * 0.3] * 2, lw=3)
    ax1.set_title("faults (x) and sessions (bars, bottom)")
    ax2.plot([s[0] for s in r.samples], [s[1] for s in r.samples], label="RSS MB")
    for t in r.hups:
        ax2.axvline(t, color="grey", lw=0.5)
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("RSS MB (grey: SIGHUP)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(r: Run, a: Analysis) -> list[str]:
    tracebacks = sum("Traceback" in line for line in r.log_lines)
    errors = sum(line.startswith(("ERROR ", "CRITICAL ")) for line in r.log_lines)
    crashed = r.died_early or r.rc not in (0,)
    out = [
        f"Chaos: `voicebox run` ({r.mode}) under {len(r.applied)} seeded faults "
        f"(seed {r.seed}) and {len(r.hups)} SIGHUP reloads in {r.t_end / 60:.1f} min",
        "",
        "| what | value | target |",
        "|---|---|---|",
        f"| crashes (early exit or rc != 0) | {int(crashed)} (rc {r.rc}) | 0 |",
        f"| tracebacks / ERROR or CRITICAL lines in the daemon log | {tracebacks} / {errors} "
        "| 0 / - |",
        f"| sessions opened | {a.sessions} | - |",
    ]
    share = 100.0 * a.delivered / a.spoken if a.spoken else float("nan")
    out.append(
        f"| bursts delivered / spoken | {a.delivered} / {a.spoken} ({share:.1f} %) | >= 99.5 % |"
    )
    out.append(f"| burst positions sent twice to one session | {a.twice} | 0 |")
    all_dt = [v for vs in a.by_kind.values() for v in vs]
    out.append(
        f"| faults followed by a session within {NEXT_SESSION_TARGET_S:g} s | "
        f"{sum(v <= NEXT_SESSION_TARGET_S for v in all_dt)} / {len(all_dt)}"
        f" (pending at the end {sum(a.pending.values())}, skipped {a.skipped}) | all |"
    )
    for f, label in ((0.1, "10 %"), (0.5, "50 %"), (1.0, "100 %")):
        s = at_fraction(r, f)
        if s:
            out.append(
                f"| RSS / fds / tasks at {label} | {s[1]:.1f} MB / {s[2]} / "
                f"{'-' if s[3] is None else int(s[3])} | <= 60 MB, flat |"
            )
    out.append(f"| RSS growth over the second half | {second_half_growth(r):+.2f} MB | < 2 MB |")
    silent = sum(1 for ap in r.applied if ap.kind == "silent" and ap.connection is not None)
    alarms = int(r.metrics.get("voicebox_counters_half_open", 0))
    out.append(
        f"| half-open alarms / silent faults (more alarms than faults: false ones) | "
        f"{alarms} / {silent} | no more than the faults |"
    )
    m = r.metrics
    out.append(
        "| daemon counters | "
        + ", ".join(
            f"{k.removeprefix('voicebox_counters_')}={int(v)}"
            for k, v in sorted(m.items())
            if k.removeprefix("voicebox_counters_")
            in ("replays", "replayed_ms", "replay_dropped_ms", "half_open", "oversize_frames")
            or k
            in ("voicebox_counters_reconnects", "voicebox_counters_sessions", "voicebox_degraded")
        )
        + " | - |"
    )
    out += [
        "",
        "| fault | applied | fault to next session p50 / p95 / max (s) | kept the session "
        "| no later session before the end |",
        "|---|---|---|---|---|",
    ]
    counts: dict[str, int] = {}
    for ap in r.applied:
        if ap.connection is not None:
            counts[ap.kind] = counts.get(ap.kind, 0) + 1
    for kind in sorted(counts):
        dts = a.by_kind.get(kind, [])
        cell = f"{pct(dts, 0.5):.1f} / {pct(dts, 0.95):.1f} / {max(dts):.1f}" if dts else "-"
        out.append(
            f"| {kind} | {counts[kind]} | {cell} | {a.kept.get(kind, 0)} "
            f"| {a.pending.get(kind, 0)} |"
        )
    if a.late:
        out += ["", "Faults not followed by a session within the target:", ""]
        out += [f"- {k} at {t:.0f} s: {dt:.1f} s" for k, t, dt in a.late]
    if a.lost:
        out += ["", f"Lost bursts ({len(a.lost)}), each with the fault nearest to it:", ""]
        runs: list[list[tuple[int, float, str]]] = []
        for item in a.lost:  # consecutive bursts with the same nearest fault: one line
            if runs and item[0] == runs[-1][-1][0] + 1 and item[2][:12] == runs[-1][-1][2][:12]:
                runs[-1].append(item)
            else:
                runs.append([item])
        for run_ in runs:
            (b0, t0, where), (b1, _, _) = run_[0], run_[-1]
            name = f"burst {b0}" if b0 == b1 else f"bursts {b0}-{b1} ({len(run_)})"
            out.append(f"- {name} from {t0:.0f} s: {where}")
    out += [
        "",
        "Delivered: >= 80 % of a burst's positions reached the agent on some session. "
        "Fault to next session: from the fault (for HTTP refusals, the first refused handshake) "
        "to the first user audio on a later connection; 0 when the session kept working. "
        "Times are inflated on this shared 2-core machine. Plot: bench/out/chaos.png.",
    ]
    return out


def single(seed: int, minutes: float, mode: str, kinds: tuple[str, ...]) -> list[str]:
    """One run per kind with that one fault: bursts delivered must be 100 %."""
    out = [
        f"Chaos, single-fault scenarios: one fault per {minutes * 60:g} s run of `voicebox run` "
        f"({mode}), seed {seed}",
        "",
        "| fault | bursts delivered / spoken | fault to next session, s | lost bursts |",
        "|---|---|---|---|",
    ]
    for kind in kinds:
        r = asyncio.run(run(seed, 1, minutes, mode, (kind,)))
        a = analyse(r)
        dts = [v for vs in a.by_kind.values() for v in vs]
        nxt = f"{dts[0]:.1f}" if dts else ("pending" if a.pending else "skipped")
        if kind in KEEPS_SESSION and a.kept:
            nxt = "kept the session"
        lost = ", ".join(str(b) for b, _, _ in a.lost) or "-"
        crashed = " (crashed)" if r.died_early or r.rc != 0 else ""
        out.append(f"| {kind}{crashed} | {a.delivered} / {a.spoken} | {nxt} | {lost} |")
    out += [
        "",
        "An HTTP refusal applies to the next handshake; with one fault there is none, so it stays "
        "pending and the session it never hit goes on.",
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 minute, 6 faults")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--faults", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--mode", default="always_on", choices=["always_on", "push_to_talk"])
    parser.add_argument("--kinds", default=None, help="comma-separated chaos kinds (default all)")
    parser.add_argument("--out", type=Path, default=OUT, help="plot and daemon log go here")
    parser.add_argument(
        "--single", action="store_true", help="each kind alone, one fault per run (MINUTES each)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    minutes = args.minutes or (1.0 if args.quick else 3.0)
    faults = args.faults or (6 if args.quick else 10)
    kinds = tuple(args.kinds.split(",")) if args.kinds else chaos.KINDS
    if args.single:
        print(*single(args.seed, args.minutes or 0.5, args.mode, kinds), sep="\n")
        return 0
    r = asyncio.run(run(args.seed, faults, minutes, args.mode, kinds))
    a = analyse(r)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chaos_daemon.log").write_text("\n".join(r.log_lines) + "\n")
    with contextlib.suppress(ImportError):
        plot(r, args.out / "chaos.png")
    print(*report(r, a), sep="\n")
    return 0


if __name__ == "__main__":
    t = time.monotonic()
    rc = main()
    print(f"\n_took {time.monotonic() - t:.0f} s_", file=sys.stderr)
    sys.exit(rc)
