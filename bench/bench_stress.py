"""Conversation under CPU stress, adaptive tuning on vs off; and RSS over a long conversation.

Each run is a subprocess that wires what the daemon wires (AudioEngine with file devices,
Supervisor, Monitor, Tuner) against the local simulator, itself in a third process, in
always_on mode with a looped "user" WAV (speech, then silence long enough for the reply). While
it runs, `stress-ng --cpu 2N` (Python busy loops if stress-ng is missing) keeps 2x more busy
processes than cores. Every 0.5 s it records ring level, underruns, pre-roll, chunk, CPU and
tuning changes to bench/out/stress_<mode>.csv; the plot is bench/report.png. The same load and
conversation also run through the official SDK's AsyncConversation (scenario_sdk) for a third
column: its late agent audio, mic backlog and ping-to-pong at the agent.
Usage: .venv/bin/python bench/bench_stress.py [--quick] [--seconds S] [--minutes M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from voicebox.simulator.voice import silence, speech_like  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
TICK_S = 0.5
SPEECH_S, GAP_S = 1.2, 8.0  # the user's cycle: the reply (about 5.5 s) fits in the gap
PONG_P99_TARGET_MS = 50.0
STALL_MS, STALL_EVERY_S = 450, 4.0
FLAT_MB = 1.0  # RSS growth over the second half of the long run that still counts as flat
FIELDS = [
    "t",
    "ring_level_ms",
    "underruns",
    "output_underflows",
    "dropped_mic",
    "prebuffer_ms",
    "chunk_ms",
    "receive_timeout_s",
    "cpu_percent",
    "rss_mb",
    "py_blocks",
    "state",
    "changes",
]


# --- the simulator process -------------------------------------------------------------------


async def serve(
    port: int, max_duration_s: float, lead_s: float, silent: int = 0, seconds: float = 0.0
) -> list[float]:
    """Run the simulator until SIGTERM; returns every ping-to-pong round trip it saw, in ms.
    silent: that many half-open faults (seeded chaos schedule) over `seconds`."""
    from voicebox.simulator import chaos
    from voicebox.simulator.server import SimConfig, Simulator

    cfg = SimConfig(
        port=port,
        ping_interval_s=0.5,
        seconds_per_char=0.15,  # replies of about 5.5 s
        max_duration_s=max_duration_s,
        lead_s=lead_s,
        first_message="Hello from the stress bench, this is a longer greeting to fill the ring.",
    )
    async with Simulator(cfg) as sim:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        if silent:
            spec = chaos.ChaosSpec(1, silent, seconds / 60)
            runner = asyncio.create_task(chaos.run_chaos(sim, chaos.schedule(spec, ("silent",))))
        await stop.wait()
        if silent:
            runner.cancel()
        return [rtt * 1000 for c in sim.connections for rtt in c.pong_latencies_s]


# --- the scenario process --------------------------------------------------------------------


def write_user_wav(path: Path) -> None:
    pcm = np.concatenate([speech_like(SPEECH_S, 16000, f0=120.0, level=0.6), silence(GAP_S)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


async def stall_loop(seconds: float) -> None:
    """Block the event loop now and then, as a GC pause or a slow synchronous call would."""
    while True:
        await asyncio.sleep(STALL_EVERY_S)
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from voicebox import logs
    from voicebox.audio.engine import AudioEngine
    from voicebox.config import Config, with_changes
    from voicebox.convai.supervisor import Supervisor
    from voicebox.convai.tools import builtin_tools
    from voicebox.monitor import Monitor, Sample, detect_environment
    from voicebox.tuning import Tuner, TuningChange

    tmp = Path(args.tmp)
    mic = tmp / "user.wav"
    write_user_wav(mic)
    changes = {
        "agent.agent_id": "bench",
        "agent.api_base": f"http://127.0.0.1:{args.port}",
        "conversation.mode": "always_on",
        "conversation.rollover": args.max_duration_s < 600,
        "conversation.max_duration_s": int(args.max_duration_s),
        "conversation.rollover_margin_s": min(30.0, args.max_duration_s / 3),
        "audio.input.backend": "file",
        "audio.input.path": str(mic),
        "audio.input.loop": True,
        "audio.output.backend": "file",
        "audio.output.path": str(tmp / f"out_{args.mode}.wav"),
        "tuning.adaptive": args.mode != "off",
    }
    cfg: Config = with_changes(Config(), **changes)
    engine = AudioEngine(cfg.audio)
    sup = Supervisor(cfg, engine, None, builtin_tools(engine), lambda s, f: None)
    tuner = Tuner(cfg, detect_environment())
    monitor = Monitor(cfg.monitor)
    proc = psutil.Process()
    tick_changes: list[str] = []
    all_changes: list[tuple[float, TuningChange]] = []
    t0 = time.monotonic()

    def apply(items: list[TuningChange]) -> None:  # what the daemon's _apply_tuning does
        for c in items:
            if c.name == "prebuffer_ms":
                engine.set_prebuffer_ms(int(c.new))
            elif c.name == "ring_ms":
                engine.set_ring_ms(int(c.new))
            elif c.name == "chunk_ms":
                engine.set_chunk_ms(int(c.new))
            elif c.name == "receive_timeout_s":
                sup.set_receive_timeout(float(c.new))
            elif c.name == "resume_buffer_s":
                sup.set_resume_buffer_s(float(c.new))
            elif c.name in ("probe_interval_s", "probe_timeout_s"):
                sup.set_probe_timing(tuner.current.probe_interval_s, tuner.current.probe_timeout_s)
            tick_changes.append(f"{c.name}={c.new}")
            all_changes.append((time.monotonic() - t0, c))

    def on_sample(sample: Sample) -> None:  # as the daemon's _on_sample
        snap = sup.snapshot()
        pong_ms, probe_ms = snap.get("pong_ms_p50"), snap.get("probe_rtt_ms_p99")
        now, stats = time.monotonic(), engine.stats()
        apply(tuner.update(now, sample, stats, pong_ms, sup.quiet(), probe_rtt_ms=probe_ms))

    half_open: list[float] = []  # silent_s of each link.half_open: fault to detection, at most

    class HalfOpen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            f = logs.fields_of(record)
            if f.get("EVENT") == "link.half_open" and "SILENT_S" in f:
                half_open.append(float(f["SILENT_S"]))

    logging.getLogger("voicebox.convai").addHandler(HalfOpen())
    logging.getLogger("voicebox.convai").setLevel(logging.INFO)
    sup.set_probe_timing(tuner.current.probe_interval_s, tuner.current.probe_timeout_s)

    t = tuner.current
    engine.set_prebuffer_ms(t.prebuffer_ms)
    engine.set_ring_ms(t.ring_ms)
    sup.set_receive_timeout(t.receive_timeout_s)
    await engine.start(sup.on_mic_chunk)
    tasks = [asyncio.create_task(sup.run()), asyncio.create_task(monitor.run(on_sample))]
    if args.stall_ms:
        tasks.append(asyncio.create_task(stall_loop(args.stall_ms / 1000.0)))
    # Rows go to the CSV as they come: held in memory they would grow this process's RSS, which
    # the long run is there to measure.
    csv_file = open(args.csv, "w", newline="")  # noqa: SIM115, ASYNC230 - closed below; tiny writes
    writer = csv.DictWriter(csv_file, FIELDS, restval="")
    writer.writeheader()
    cpu_sum, cpu_n = 0.0, 0
    rss_first = rss_half = rss_last = rss_max = None  # MB; at the start, half-way, the end
    blocks_first = blocks_half = blocks_last = 0  # Python's allocated blocks, the same times
    next_tick = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        next_tick += TICK_S
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        s = engine.stats()
        sample = monitor.latest()
        snap = sup.snapshot()
        row = {
            "t": round(time.monotonic() - t0, 2),
            "ring_level_ms": s.ring_level_ms,
            "underruns": s.underruns,
            "output_underflows": s.output_underflows,
            "dropped_mic": s.dropped_chunks
            + s.input_overflows
            + snap["counters"]["resume_dropped"],
            "prebuffer_ms": s.prebuffer_ms,
            "chunk_ms": tuner.current.chunk_ms,
            "receive_timeout_s": snap["receive_timeout_s"],
            "cpu_percent": round(sample.cpu_percent_raw, 1) if sample else "",
            "rss_mb": round(proc.memory_info().rss / 2**20, 2),
            "py_blocks": sys.getallocatedblocks(),
            "state": snap["state"],
            "changes": " ".join(tick_changes),
        }
        tick_changes.clear()
        writer.writerow(row)
        if sample:
            cpu_sum, cpu_n = cpu_sum + row["cpu_percent"], cpu_n + 1
        rss_last, blocks_last = row["rss_mb"], row["py_blocks"]
        if rss_first is None:
            rss_first, blocks_first = rss_last, blocks_last
        if rss_half is None and row["t"] >= args.seconds / 2:
            rss_half, blocks_half = rss_last, blocks_last
        rss_max = max(rss_max or 0.0, rss_last)
    snap = sup.snapshot()
    await sup.stop()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    s = engine.stats()
    await engine.stop()
    csv_file.close()
    counters = snap["counters"]
    return {
        "mode": args.mode,
        "seconds": round(time.monotonic() - t0, 1),
        "underruns": s.underruns,
        "output_underflows": s.output_underflows,
        "dropped_mic": s.dropped_chunks + s.input_overflows + counters["resume_dropped"],
        "ring_overflows": s.ring_overflows,
        "turns": counters["turns"],
        "sessions": counters["sessions"],
        "rollovers": counters["rollovers"],
        "reconnects": counters["reconnects"],
        "pong": snap["pong_latency"],
        "changes": [
            f"{round(at, 1)}s {c.name} {c.old}->{c.new} ({c.reason})" for at, c in all_changes
        ],
        "final_prebuffer_ms": s.prebuffer_ms,
        "cpu_mean": round(cpu_sum / cpu_n, 1) if cpu_n else None,
        "rss_first_mb": rss_first,
        "rss_half_mb": rss_half,
        "rss_last_mb": rss_last,
        "rss_max_mb": rss_max,
        "py_blocks": [blocks_first, blocks_half, blocks_last],
        "half_open": half_open,
        "probe": [snap["probe"]["interval_s"], snap["probe"]["timeout_s"]],
    }


SDK_BLOCK = (
    4000  # frames per mic block: the SDK's AsyncDefaultAudioInterface.INPUT_FRAMES_PER_BUFFER
)
MIC_QUEUE_S = 1.0  # voicebox's capture queue (audio.input.queue_ms): later mic audio it would drop
REPLY_GAP_S = 0.5  # agent audio later than this after the previous chunk ran out: a new reply


async def scenario_sdk(args: argparse.Namespace) -> dict[str, Any]:
    """The official SDK's AsyncConversation with an audio interface shaped like its default one.

    Mic: a thread hands 250 ms blocks of the looped user WAV to the event loop with
    run_coroutine_threadsafe on a real-time schedule, as the SDK's PyAudio callback does (no
    bound, nothing dropped); each block's capture-to-sent delay is recorded. Speaker: no device
    (PyAudio is not installed); a real-time playout clock with no pre-roll, as the default
    interface writes each chunk straight to the device, counts agent audio that arrived after
    the previous chunk of the same reply had finished playing (an underrun on a real speaker).
    """
    import threading
    import warnings

    import psutil

    warnings.simplefilter("ignore")
    from elevenlabs.client import ElevenLabs
    from elevenlabs.conversational_ai.conversation import AsyncAudioInterface, AsyncConversation

    tmp = Path(args.tmp)
    mic = tmp / "user.wav"
    write_user_wav(mic)
    with wave.open(str(mic), "rb") as w:
        pcm = w.readframes(w.getnframes())
    loop = asyncio.get_running_loop()
    lags: list[float] = []  # seconds from block captured to block sent
    late = {"chunks": 0, "ms": 0.0}
    lines = [0]
    stop = threading.Event()

    class SdkLikeAudio(AsyncAudioInterface):  # type: ignore[misc]
        until = 0.0  # monotonic time the queued agent audio finishes playing

        async def start(self, input_callback: Any) -> None:
            async def send(block: bytes, captured: float) -> None:
                await input_callback(block)
                lags.append(time.monotonic() - captured)

            def capture() -> None:
                step = SDK_BLOCK * 2
                looped = pcm + pcm[:step]
                due = time.monotonic()
                i = 0
                while not stop.is_set():
                    due += SDK_BLOCK / 16000
                    time.sleep(max(0.0, due - time.monotonic()))
                    block = looped[i : i + step]
                    i = (i + step) % len(pcm)
                    asyncio.run_coroutine_threadsafe(send(block, due), loop)

            self.thread = threading.Thread(target=capture, daemon=True)
            self.thread.start()

        async def stop(self) -> None:
            stop.set()

        async def output(self, audio: bytes) -> None:
            now = time.monotonic()
            behind = now - self.until
            if 0 < behind < REPLY_GAP_S:
                late["chunks"] += 1
                late["ms"] += behind * 1000
            self.until = max(self.until, now) + len(audio) / 32000

        async def interrupt(self) -> None:
            self.until = 0.0

    async def line(_text: str) -> None:
        lines[0] += 1

    client = ElevenLabs(api_key="bench", base_url=f"http://127.0.0.1:{args.port}")
    conv = AsyncConversation(
        client,
        "bench",
        requires_auth=False,
        audio_interface=SdkLikeAudio(),
        callback_user_transcript=line,
        callback_agent_response=line,
    )
    proc = psutil.Process()
    psutil.cpu_percent()
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    await conv.start_session()
    stall = asyncio.create_task(stall_loop(args.stall_ms / 1000.0)) if args.stall_ms else None
    next_tick = t0
    while time.monotonic() - t0 < args.seconds:
        next_tick += TICK_S
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        rows.append(
            {
                "t": round(time.monotonic() - t0, 2),
                "underruns": late["chunks"],
                "dropped_mic": sum(1 for x in lags if x > MIC_QUEUE_S),
                "cpu_percent": psutil.cpu_percent(),
                "rss_mb": round(proc.memory_info().rss / 2**20, 2),
                "state": "ended" if conv._should_stop.is_set() else "open",
            }
        )
    stop.set()
    if stall is not None:
        stall.cancel()
    ended = conv._should_stop.is_set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conv.end_session(), 5)
    write_csv(Path(args.csv), rows)
    cpu = [float(r["cpu_percent"]) for r in rows]
    rss = [float(r["rss_mb"]) for r in rows]
    return {
        "mode": "sdk",
        "seconds": round(time.monotonic() - t0, 1),
        "underruns": late["chunks"],
        "late_ms": round(late["ms"]),
        "dropped_mic": sum(1 for x in lags if x > MIC_QUEUE_S),
        "mic_blocks": len(lags),
        "mic_lag": summary([x * 1000 for x in lags]),
        "ended_early": ended,
        "turns": lines[0],
        "pong": {},
        "changes": [],
        "final_prebuffer_ms": 0,
        "cpu_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "rss_first_mb": rss[0] if rss else None,
        "rss_last_mb": rss[-1] if rss else None,
        "rss_max_mb": max(rss) if rss else None,
    }


# --- the orchestrator ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stress:
    """stress-ng --cpu N (or N Python busy loops) in its own process group; stopped on exit."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tool = "stress-ng" if shutil.which("stress-ng") else "python busy loops"

    def __enter__(self) -> Stress:
        if self.workers <= 0:
            return self
        if self.tool == "stress-ng":
            cmd = ["stress-ng", "--cpu", str(self.workers), "--timeout", "3600s", "--quiet"]
            self.procs.append(
                subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
            )
        else:
            for _ in range(self.workers):
                cmd = [sys.executable, "-c", "while True: pass"]
                self.procs.append(subprocess.Popen(cmd, start_new_session=True))
        time.sleep(1.0)  # let the load build up
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def run_mode(
    mode: str,
    seconds: float,
    stress: int,
    lead_s: float,
    max_duration_s: float = 600.0,
    stall_ms: int = 0,
    name: str | None = None,
    out: Path = OUT,
    silent: int = 0,
) -> dict[str, Any]:
    """One scenario subprocess (plus its simulator) under `stress` busy workers."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{name or 'stress_' + mode}.csv"
    port = free_port()
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="vb-stress-") as tmp, Stress(stress):
        sim = subprocess.Popen(
            [sys.executable, me, "--serve", str(port), "--max-duration-s", str(max_duration_s)]
            + ["--lead-s", str(lead_s), "--pong-file", str(Path(tmp) / "pongs.json")]
            + ["--silent", str(silent), "--seconds", str(seconds)],
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # wait until the simulator listens
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise RuntimeError("the simulator did not start")
                time.sleep(0.1)
            cmd = [
                sys.executable,
                me,
                "--scenario",
                mode,
                "--port",
                str(port),
                "--seconds",
                str(seconds),
                "--csv",
                str(csv_path),
                "--tmp",
                tmp,
                "--max-duration-s",
                str(max_duration_s),
                "--stall-ms",
                str(stall_ms),
            ]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=seconds + 120, check=False
            )
        finally:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        pongs = Path(tmp) / "pongs.json"
        rtts: list[float] = json.loads(pongs.read_text()) if pongs.exists() else []
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"scenario {mode} failed with exit status {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rtt"] = summary(rtts)
    result["stress"] = stress
    result["csv"] = str(csv_path)
    return result


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def summary(values_ms: list[float]) -> dict[str, float]:
    """p50 / p99 / max like the supervisor's LatencyStats."""
    if not values_ms:
        return {}
    v = sorted(values_ms)
    return {
        "p50_ms": v[len(v) // 2],
        "p99_ms": v[min(len(v) - 1, int(0.99 * len(v)))],
        "max_ms": v[-1],
        "n": float(len(v)),
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot(
    groups: list[tuple[str, list[dict[str, Any]]]], rss: dict[str, Any] | None, path: Path
) -> None:
    """One column per scenario (off vs on): ring level and pre-roll, underruns, CPU; RSS below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_n = 4 if rss else 3
    fig = plt.figure(figsize=(14, 2.7 * rows_n + 0.8))
    grid = fig.add_gridspec(rows_n, len(groups))
    colors = {"off": "tab:red", "on": "tab:blue"}
    for col, (title, results) in enumerate(groups):
        axes = [fig.add_subplot(grid[r, col]) for r in range(3)]
        for res in results:
            rows = read_csv(Path(res["csv"]))
            mode, color = res["mode"], colors.get(res["mode"], "k")
            t = [float(r["t"]) for r in rows]
            axes[0].plot(
                t,
                [float(r["ring_level_ms"]) for r in rows],
                color=color,
                lw=1,
                label=f"ring level, adaptation {mode}",
            )
            axes[0].step(
                t,
                [float(r["prebuffer_ms"]) for r in rows],
                color=color,
                ls="--",
                where="post",
                label=f"pre-roll, adaptation {mode}",
            )
            axes[1].step(
                t,
                [int(r["underruns"]) for r in rows],
                color=color,
                where="post",
                label=f"underruns, adaptation {mode}",
            )
            axes[1].step(
                t,
                [int(r["dropped_mic"]) for r in rows],
                color=color,
                ls=":",
                where="post",
                label=f"dropped mic chunks, adaptation {mode}",
            )
            cpu = [(float(r["t"]), float(r["cpu_percent"])) for r in rows if r["cpu_percent"]]
            axes[2].plot([c[0] for c in cpu], [c[1] for c in cpu], color=color, label=mode)
            for r in rows:
                if not r["changes"]:
                    continue
                for ax in axes:
                    ax.axvline(float(r["t"]), color=color, alpha=0.3, lw=1)
                axes[2].annotate(
                    r["changes"].replace(" ", "\n"),
                    (float(r["t"]), 3),
                    fontsize=6,
                    color=color,
                    rotation=90,
                    va="bottom",
                    ha="right",
                )
        axes[0].set_title(title, fontsize=10)
        axes[0].set_ylabel("ms")
        axes[1].set_ylabel("count, cumulative")
        axes[1].set_ylim(bottom=0)
        axes[1].set_ylim(top=max(1.0, axes[1].get_ylim()[1]))
        axes[2].set_ylabel("system CPU %")
        axes[2].set_ylim(0, 105)
        axes[2].set_xlabel("time, s (faint vertical lines: tuning changes)")
        for ax in axes:
            ax.legend(loc="upper left", fontsize=6, ncol=2)
            ax.grid(alpha=0.3)
    if rss:
        ax = fig.add_subplot(grid[3, :])
        rows = read_csv(Path(rss["csv"]))
        rss_mb = [float(r["rss_mb"]) for r in rows]
        ax.plot([float(r["t"]) / 60 for r in rows], rss_mb, "k")
        ax.set_ylabel("RSS, MB")
        ax.set_ylim(0, max(rss_mb, default=1.0) * 1.25)
        ax.set_xlabel(
            f"time, min: one long conversation, {rss['rollovers']} rollovers at a 45 s cap"
        )
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _pong(p: dict[str, float]) -> str:
    if not p:
        return "no pongs"
    return f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} / {p['max_ms']:.1f}"


def table(
    off: dict[str, Any], on: dict[str, Any], targets: bool, sdk: dict[str, Any] | None = None
) -> list[str]:
    def met(ok: bool) -> str:
        return yes(ok) if targets else "-"

    def s(key: str, text: str | None = None) -> str:
        if sdk is None:
            return ""
        return f" {text if text is not None else sdk[key]} |"

    pong_ok = on["rtt"].get("p99_ms", 1e9) <= PONG_P99_TARGET_MS
    rows: list[tuple[str, Any, Any, str, str, str]] = [
        (
            "playback underruns",
            off["underruns"],
            on["underruns"],
            s("", f"{sdk['underruns']} late chunks ({sdk['late_ms']} ms) [1]" if sdk else ""),
            "0",
            met(on["underruns"] == 0),
        ),
        (
            "dropped mic audio, chunks",
            off["dropped_mic"],
            on["dropped_mic"],
            s("", f"{sdk['dropped_mic']} of {sdk['mic_blocks']} blocks [2]" if sdk else ""),
            "0",
            met(on["dropped_mic"] == 0),
        ),
        (
            "ping to pong at the agent p50 / p99 / max, ms",
            _pong(off["rtt"]),
            _pong(on["rtt"]),
            s("", _pong(sdk["rtt"]) if sdk else ""),
            f"p99 <= {PONG_P99_TARGET_MS:.0f}",
            met(pong_ok),
        ),
        (
            "ping handling in voicebox p50 / p99 / max, ms",
            _pong(off["pong"]),
            _pong(on["pong"]),
            s("", "-"),
            "-",
            "-",
        ),
        (
            "mic capture to sent p50 / p99 / max, ms",
            "-",
            "-",
            s("", _pong(sdk["mic_lag"]) if sdk else ""),
            "-",
            "-",
        ),
        ("transcript lines, user + agent", off["turns"], on["turns"], s("turns"), "-", "-"),
        (
            "pre-roll at the end, ms",
            off["final_prebuffer_ms"],
            on["final_prebuffer_ms"],
            s("", "none"),
            "-",
            "-",
        ),
        ("tuning changes", len(off["changes"]), len(on["changes"]), s("", "-"), "-", "-"),
        (
            "half-open alarms (no fault injected: all false)",
            len(off.get("half_open", [])),
            len(on.get("half_open", [])),
            s("", "-"),
            "0",
            yes(not on.get("half_open")),
        ),
        (
            "link probe interval / timeout at the end, s",
            " / ".join(f"{v:g}" for v in off.get("probe", [])),
            " / ".join(f"{v:g}" for v in on.get("probe", [])),
            s("", "-"),
            "-",
            "-",
        ),
        ("mean system CPU, %", off["cpu_mean"], on["cpu_mean"], s("cpu_mean"), "-", "-"),
    ]
    if sdk is None:
        rows = [r for r in rows if r[0] != "mic capture to sent p50 / p99 / max, ms"]
    sdk_head = " SDK AsyncConversation |" if sdk else ""
    out = [
        f"| figure | adaptation off | adaptation on |{sdk_head} target (on) | met |",
        "|---|---|---|" + ("---|" if sdk else "") + "---|---|",
    ]
    if not targets:
        out = [line.replace(" target (on) | met |", " target | met |") for line in out]
    out += [f"| {n} | {a} | {b} |{c} {t if targets else '-'} | {m} |" for n, a, b, c, t, m in rows]
    return out


SDK_NOTES = (
    "[1] The SDK column's speaker is a real-time playout clock with no pre-roll (the SDK's "
    "default interface writes each chunk straight to PyAudio): an agent audio chunk that arrived "
    "after the previous chunk of the same reply had finished playing (less than "
    f"{REPLY_GAP_S:g} s late) is one late chunk; the ms are the silence summed. "
    "[2] The SDK's mic path has no bound (run_coroutine_threadsafe per 250 ms block), so it never "
    "drops: the figure counts blocks sent more than "
    f"{MIC_QUEUE_S:g} s after capture, the audio voicebox's 1 s capture queue would have dropped; "
    "the next row gives the capture-to-sent delay."
)


def halfopen_table(r: dict[str, Any], load: str) -> list[str]:
    """Half-open links under load: how long each took to notice, from its last sign of life."""
    found = sorted(r["half_open"])
    cell = f"{statistics.median(found):.2f} / {found[-1]:.2f}" if found else "none detected"
    return [
        f"Half-open links under load ({load}, plus a {STALL_MS} ms stall every "
        f"{STALL_EVERY_S:g} s, adaptation on): 5 silent faults (the simulator stops reading "
        f"and sending, the socket stays open) in {r['seconds']:.0f} s. Detected after: from "
        "the link's last pong or frame, an upper bound on the time from the fault.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
        f"| half-open links detected | {len(found)} of 5 | 5 | {yes(len(found) >= 5)} |",
        f"| detected after, median / max, s | {cell} | <= 3 | "
        f"{yes(bool(found) and found[-1] <= 3.0)} |",
        f"| link probe interval / timeout at the end, s | "
        f"{' / '.join(f'{v:g}' for v in r['probe'])} | | |",
    ]


def rss_table(rss: dict[str, Any], minutes: float) -> list[str]:
    """The long run's table: RSS at the start, half-way and the end; the second half's growth."""
    late = rss["rss_last_mb"] - rss["rss_half_mb"]
    b0, b1, b2 = rss["py_blocks"]
    return [
        f"RSS over one {minutes:g}-minute conversation without stress, the simulator capping "
        f"sessions at 45 s ({rss['rollovers']} rollovers, {rss['sessions']} sessions, "
        f"{rss['turns']} transcript lines). The first half warms up (bounded histories fill, "
        "caches and the allocator settle); flat means no growth in the second half:",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
        f"| RSS at the start / half-way / end (max), MB | {rss['rss_first_mb']:.1f} / "
        f"{rss['rss_half_mb']:.1f} / {rss['rss_last_mb']:.1f} ({rss['rss_max_mb']:.1f}) | | |",
        f"| RSS growth over the second half | {late:+.2f} MB | flat (< {FLAT_MB:g} MB) "
        f"| {yes(late < FLAT_MB)} |",
        f"| Python's allocated blocks, the same times | {b0} / {b1} / {b2} | | |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, no RSS run")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 40)")
    parser.add_argument(
        "--minutes", type=float, default=None, help="RSS run length (default 30; 0 skips)"
    )
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK's run")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument(
        "--lead-s", type=float, default=0.25, help="how far ahead of real time the agent sends"
    )
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=["on", "off", "rss", "sdk"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--max-duration-s", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--stall-ms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pong-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--silent", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        rtts = asyncio.run(
            serve(args.serve, args.max_duration_s, args.lead_s, args.silent, args.seconds or 0.0)
        )
        if args.pong_file:  # round trips as the agent sees them, event-loop stalls included
            Path(args.pong_file).write_text(json.dumps(rtts))
        return 0
    if args.scenario:
        args.mode = args.scenario
        run = scenario_sdk if args.mode == "sdk" else scenario
        print(json.dumps(asyncio.run(run(args))))
        return 0

    seconds = args.seconds or (15.0 if args.quick else 40.0)
    minutes = args.minutes if args.minutes is not None else (0.0 if args.quick else 30.0)
    w, lead = args.workers, args.lead_s
    stress = [run_mode(mode, seconds, w, lead) for mode in ("off", "on")]
    sdk = run_mode("sdk", seconds, w, lead) if not args.no_sdk else None
    stalls = [
        run_mode(mode, seconds, w, lead, stall_ms=STALL_MS, name=f"stalls_{mode}")
        for mode in ("off", "on")
    ]
    sdk_stalls = (
        run_mode("sdk", seconds, w, lead, stall_ms=STALL_MS, name="stalls_sdk")
        if not args.no_sdk
        else None
    )
    halfopen = run_mode(
        "on", max(seconds, 40.0), w, lead, stall_ms=STALL_MS, name="halfopen_on", silent=5
    )
    rss = run_mode("rss", minutes * 60, 0, 1.0, max_duration_s=45.0) if minutes > 0 else None
    cores, tool = os.cpu_count(), Stress(1).tool
    load = f"{w} {tool} workers on {cores} cores"
    plot(
        [
            (f"CPU stress: {load}", stress),
            (f"CPU stress + a {STALL_MS} ms event-loop stall every {STALL_EVERY_S:g} s", stalls),
        ],
        rss,
        HERE / "report.png",
    )
    vs_sdk = ", and the official SDK" if sdk else ""
    print(f"Conversation under CPU stress ({load}), adaptive tuning off vs on{vs_sdk}")
    print()
    print(
        f"Each run: {seconds:g} s of an always_on conversation (file mic and speaker, local "
        f"simulator streaming replies {lead:g} s ahead of real time). The targets apply to the "
        "plain CPU stress run."
    )
    print()
    print(*table(stress[0], stress[1], targets=True, sdk=sdk), sep="\n")
    if sdk is not None:
        print()
        print(SDK_NOTES + (" The SDK session ended early." if sdk["ended_early"] else ""))
    print()
    print(
        f"Same load plus a {STALL_MS} ms blocking call on the event loop every "
        f"{STALL_EVERY_S:g} s (a GC pause or slow synchronous call): the pre-roll has to grow. "
        "The SDK run gets the same stall on its event loop."
    )
    print()
    print(*table(stalls[0], stalls[1], targets=False, sdk=sdk_stalls), sep="\n")
    for label, res in (("CPU stress", stress[1]), ("stalls", stalls[1])):
        print()
        print(f"Tuning changes, {label}, adaptation on: " + ("; ".join(res["changes"]) or "none"))
    print()
    print(*halfopen_table(halfopen, load), sep="\n")
    if rss:
        print()
        print(*rss_table(rss, minutes), sep="\n")
    print()
    print("![buffer level, underruns and tuning changes under load](report.png)")
    csvs = [
        r["csv"]
        for r in [
            *stress,
            *([sdk] if sdk else []),
            *stalls,
            *([sdk_stalls] if sdk_stalls else []),
            *([rss] if rss else []),
        ]
    ]
    print()
    shown = [os.path.relpath(c, HERE.parent) for c in csvs]
    print("Time series (every 0.5 s): " + ", ".join(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
