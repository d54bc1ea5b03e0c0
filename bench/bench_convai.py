"""Conversation engine figures against the local simulator on loopback.

Mic-to-wire latency, reconnect time after a 1012, the duration-cap restart gap and pong latency
are measured in this process. CPU seconds and peak RSS of a full-duplex conversation are measured
in child processes (the simulator stays in this one), in interleaved rounds: the mic clock alone
(the floor), voicebox, and the official SDK's AsyncConversation with a null audio interface, as
shipped and with compression off. In each child a thread plays the microphone: 20 ms chunks on a
real-time schedule, handed to the event loop the way each client's own audio input does it.
Usage: bench_convai.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebox.audio.formats import PCM_16000, AudioFormat  # noqa: E402
from voicebox.audio.port import AudioStats, OnChunk  # noqa: E402
from voicebox.config import Config, with_changes  # noqa: E402
from voicebox.convai.supervisor import Supervisor  # noqa: E402
from voicebox.convai.tools import ToolRegistry  # noqa: E402
from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402
from voicebox.simulator.voice import speech_like  # noqa: E402

CHUNK_S = 0.02
SAY_S, PAUSE_S = 1.5, 2.5  # the simulated user's rhythm in the full-duplex conversation


class NullAudio:
    """An AudioPort whose "speaker" plays agent audio at real time into nothing (no task)."""

    def __init__(self) -> None:
        self._input = PCM_16000
        self._output = PCM_16000
        self.played = 0
        self._until = 0.0  # monotonic time the queued audio ends

    @property
    def input_format(self) -> AudioFormat:
        return self._input

    async def start(self, on_chunk: OnChunk) -> None:
        pass

    def set_input_format(self, fmt: AudioFormat) -> None:
        self._input = AudioFormat("pcm", fmt.rate)

    @property
    def output_format(self) -> AudioFormat:
        return self._output

    def set_output_format(self, fmt: AudioFormat) -> None:
        self._output = fmt

    def play(self, data: bytes) -> None:
        now = time.monotonic()
        self.played += len(data)
        self._until = max(self._until, now) + len(data) / (
            self._output.rate * self._output.bytes_per_sample
        )

    def end_reply(self) -> None:
        pass

    def interrupt(self) -> None:
        self._until = 0.0

    @property
    def playing(self) -> bool:
        return time.monotonic() < self._until

    async def drain(self, timeout: float) -> bool:
        await asyncio.sleep(min(timeout, max(0.0, self._until - time.monotonic())))
        return not self.playing

    def set_volume(self, volume: float) -> None:
        pass

    def set_prebuffer_ms(self, ms: int) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stats(self) -> AudioStats:
        return AudioStats()


def user_script(seconds: float) -> list[np.ndarray[Any, Any]]:
    """20 ms chunks: speak SAY_S, pause PAUSE_S, repeated."""
    n = int(16000 * CHUNK_S)
    speech = speech_like(SAY_S, 16000)
    cycle = np.concatenate([speech, np.zeros(int(PAUSE_S * 16000), np.int16)])
    total = np.resize(cycle, int(seconds * 16000))
    return [total[i : i + n] for i in range(0, len(total) - n + 1, n)]


async def feed(on_chunk: Any, chunks: list[np.ndarray[Any, Any]] | None, seconds: float) -> None:
    """Deliver 20 ms chunks on a real-time schedule (silence when no script)."""
    loop = asyncio.get_running_loop()
    silence = np.zeros(int(16000 * CHUNK_S), np.int16)
    start = loop.time()
    i = 0
    while loop.time() - start < seconds:
        chunk = chunks[i] if chunks is not None and i < len(chunks) else silence
        r = on_chunk(chunk)
        if asyncio.iscoroutine(r):
            await r
        i += 1
        await asyncio.sleep(max(0.0, start + i * CHUNK_S - loop.time()))


def mic_thread(
    deliver: Any, chunks: list[np.ndarray[Any, Any]], seconds: float, done: asyncio.Event
) -> threading.Thread:
    """A thread that plays the microphone: 20 ms chunks on a real-time schedule, each passed to
    `deliver` (the hand-off to the event loop) from the thread, like a sound card callback."""
    loop = asyncio.get_running_loop()

    def run() -> None:
        silence = np.zeros(int(16000 * CHUNK_S), np.int16)
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            deliver(chunks[i] if i < len(chunks) else silence)
            i += 1
            time.sleep(max(0.0, start + i * CHUNK_S - time.monotonic()))
        loop.call_soon_threadsafe(done.set)

    thread = threading.Thread(target=run, name="mic", daemon=True)
    thread.start()
    return thread


def config(url: str, **changes: Any) -> Config:
    keys = {"agent.agent_id": "bench", "agent.api_base": url, "conversation.mode": "always_on"}
    keys.update(changes)
    cfg: Config = with_changes(Config(), **keys)
    return cfg


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100 * len(v)))] if v else float("nan")


# --- in-process figures -------------------------------------------------------------------------


async def latency_and_pong(seconds: float) -> dict[str, Any]:
    sim = Simulator(SimConfig(first_message="", ping_interval_s=0.5))
    await sim.start()
    audio = NullAudio()
    sup = Supervisor(config(sim.url), audio, None, ToolRegistry(), lambda s, f: None)
    await audio.start(sup.on_mic_chunk)
    runner = asyncio.create_task(sup.run())
    await sim.wait_connection(1)
    await feed(sup.on_mic_chunk, user_script(seconds), seconds)
    mic = list(sup.mic_to_wire.values)
    pong = list(sup.pong_latency.values)
    rtt = [x * 1000 for x in sim.connection(1).pong_latencies_s]
    await sup.stop()
    await runner
    await sim.stop()
    return {"mic": mic, "pong": pong, "rtt": rtt}


async def restart_gaps(kind: str, rounds: int) -> list[float]:
    """Seconds from the server's close to the first mic audio on the next connection."""
    if kind == "cap":
        sim = Simulator(SimConfig(first_message="", max_duration_s=1.0))
    else:
        sim = Simulator(SimConfig(first_message=""))
    await sim.start()
    audio = NullAudio()
    # Default backoff; sessions here are short on purpose, so the quick-failure breaker is off.
    cfg = config(
        sim.url,
        **{
            "conversation.rollover": False,
            "conversation.reconnect.quick_failures": 1000,
            # Each round is one 1012 after a healthy session: the first backoff step.
            "conversation.reconnect.stable_after_s": 0.2,
        },
    )
    sup = Supervisor(cfg, audio, None, ToolRegistry(), lambda s, f: None)
    await audio.start(sup.on_mic_chunk)
    runner = asyncio.create_task(sup.run())
    mic = asyncio.create_task(feed(sup.on_mic_chunk, None, 3600))
    loop = asyncio.get_running_loop()
    gaps = []
    for i in range(1, rounds + 1):
        conn = await sim.wait_connection(i)
        await sim.wait_for(lambda c=conn: c.user_audio_chunks > 0)  # type: ignore[misc]
        if kind == "1012":
            await asyncio.sleep(0.3)
            await sim.inject("1:close:1012", i)
        await sim.wait_for(lambda c=conn: c.closed, timeout=15)  # type: ignore[misc]
        t0 = loop.time()
        nxt = await sim.wait_connection(i + 1, timeout=15)
        await sim.wait_for(lambda c=nxt: c.user_audio_chunks > 0, timeout=15)  # type: ignore[misc]
        gaps.append(loop.time() - t0)
    mic.cancel()
    await sup.stop()
    await runner
    await sim.stop()
    return gaps


# --- child processes: CPU and RSS of a full-duplex conversation ------------------------------


async def child_voicebox(port: int, seconds: float) -> dict[str, Any]:
    """voicebox's capture hands each chunk to the loop with call_soon_threadsafe."""
    loop = asyncio.get_running_loop()
    audio = NullAudio()
    cfg = config(f"http://127.0.0.1:{port}")
    sup = Supervisor(cfg, audio, None, ToolRegistry(), lambda s, f: None)
    chunks = user_script(seconds)
    done = asyncio.Event()
    runner = asyncio.create_task(sup.run())
    t0 = time.process_time()
    mic_thread(lambda c: loop.call_soon_threadsafe(sup.on_mic_chunk, c), chunks, seconds, done)
    await done.wait()
    cpu = time.process_time() - t0
    played = audio.played
    await sup.stop()
    await runner
    return {"cpu_s": cpu, "played_bytes": played}


async def child_sdk(port: int, seconds: float, deflate: bool = True) -> dict[str, Any]:
    """The SDK's AsyncDefaultAudioInterface hands each block to the loop with
    run_coroutine_threadsafe(input_callback(bytes)); the null interface here does the same."""
    import functools
    import warnings

    import websockets

    warnings.simplefilter("ignore")
    if (
        not deflate
    ):  # the SDK offers permessage-deflate; the simulator accepts it, voicebox does not
        plain = functools.partial(websockets.connect, compression=None)
        setattr(websockets, "connect", plain)  # noqa: B010 (patched for the SDK's module)
    from elevenlabs.client import ElevenLabs
    from elevenlabs.conversational_ai.conversation import AsyncAudioInterface, AsyncConversation

    loop = asyncio.get_running_loop()
    chunks = user_script(seconds)
    played = [0]
    done = asyncio.Event()

    class Null(AsyncAudioInterface):  # type: ignore[misc]
        async def start(self, input_callback: Any) -> None:
            def deliver(c: np.ndarray[Any, Any]) -> None:
                asyncio.run_coroutine_threadsafe(input_callback(c.tobytes()), loop)

            mic_thread(deliver, chunks, seconds, done)

        async def stop(self) -> None:
            pass

        async def output(self, audio: bytes) -> None:
            played[0] += len(audio)

        async def interrupt(self) -> None:
            pass

    client = ElevenLabs(api_key="bench", base_url=f"http://127.0.0.1:{port}")
    conv = AsyncConversation(client, "bench", requires_auth=False, audio_interface=Null())
    t0 = time.process_time()
    await conv.start_session()
    await done.wait()
    cpu = time.process_time() - t0
    await conv.end_session()
    return {"cpu_s": cpu, "played_bytes": played[0]}


async def child_floor(port: int, seconds: float) -> dict[str, Any]:
    """The mic clock alone: the same thread and hand-off into a no-op (the CPU floor)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def nothing(chunk: np.ndarray[Any, Any]) -> None:
        pass

    chunks = user_script(seconds)
    t0 = time.process_time()
    mic_thread(lambda c: loop.call_soon_threadsafe(nothing, c), chunks, seconds, done)
    await done.wait()
    return {"cpu_s": time.process_time() - t0, "played_bytes": 0}


def child_main(which: str, port: int, seconds: float) -> None:
    logging.basicConfig(level=logging.ERROR)
    fn = {
        "voicebox": child_voicebox,
        "sdk": child_sdk,
        "sdk_plain": lambda p, s: child_sdk(p, s, deflate=False),
        "floor": child_floor,
    }[which]
    out = asyncio.run(fn(port, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["rss_mb"] = usage.ru_maxrss / 1024
    out["cpu_total_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(out))


async def run_child(which: str, seconds: float) -> dict[str, Any] | None:
    sim = Simulator(SimConfig(reply_delay_s=0.2, max_reply_s=2.0))
    await sim.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        which,
        "--port",
        str(sim.port),
        "--seconds",
        str(seconds),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    conns = sim.connections
    await sim.stop()
    if proc.returncode != 0:
        print(f"({which} child failed: {err.decode()[-400:]})", file=sys.stderr)
        return None
    res: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    res["turns"] = sum(len(c.turns) for c in conns)
    res["user_audio_s"] = sum(c.user_audio_s for c in conns)
    return res


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the median CPU figure, with every round's figure under "cpu_rounds"."""
    if not runs:
        return None
    ordered = sorted(runs, key=lambda r: float(r["cpu_s"]))
    pick = dict(ordered[(len(ordered) - 1) // 2])
    pick["cpu_rounds"] = [round(float(r["cpu_s"]), 2) for r in runs]
    return pick


async def bench(quick: bool) -> None:
    seconds = 10.0 if quick else 20.0
    rounds = 3 if quick else 6
    cpu_rounds = 1 if quick else 3
    lat = await latency_and_pong(5.0 if quick else 10.0)
    reconnect = await restart_gaps("1012", rounds)
    cap = await restart_gaps("cap", rounds)
    # Each child runs alone with its own simulator in this process, one after another, in
    # interleaved rounds; the median round counts. Side by side on a small machine the children
    # disturbed each other's caches and wakeups, and one round swings a figure by +-20 %.
    clients = ("floor", "voicebox", "sdk", "sdk_plain")
    runs: dict[str, list[dict[str, Any]]] = {which: [] for which in clients}
    for _ in range(cpu_rounds):
        for which in clients:
            res = await run_child(which, seconds)
            if res is not None:
                res["cpu_s"] *= 60.0 / seconds
                runs[which].append(res)
    results = [median_run(runs[which]) for which in clients]
    floor, ours, sdk, plain = results

    print(f"## Conversation engine vs the local simulator ({os.cpu_count()} CPUs, loopback)")
    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    mic = lat["mic"]
    print(f"| mic-to-wire p50 ({len(mic)} chunks) | {pct(mic, 50):.2f} ms | |")
    print(f"| mic-to-wire p99 | {pct(mic, 99):.2f} ms | <= 30 ms |")
    print(
        f"| reconnect after 1012 until audio flows (backoff 0..0.5 s), median / max "
        f"({rounds} rounds) | "
        f"{statistics.median(reconnect) * 1000:.0f} / {max(reconnect) * 1000:.0f} ms | <= 1 s |"
    )
    print(
        f"| duration-cap restart gap, median / max ({rounds} rounds) | "
        f"{statistics.median(cap) * 1000:.0f} / {max(cap) * 1000:.0f} ms | <= 300 ms |"
    )
    pong, rtt = lat["pong"], lat["rtt"]
    print(
        f"| pong latency, ping received to pong written, p50 / max | "
        f"{pct(pong, 50):.2f} / {max(pong, default=float('nan')):.2f} ms | |"
    )
    print(
        f"| ping round trip seen by the server, p50 / max | "
        f"{pct(rtt, 50):.2f} / {max(rtt, default=float('nan')):.2f} ms | |"
    )
    if ours is not None:
        print(
            f"| voicebox CPU per minute of full-duplex conversation, whole process "
            f"(median of {rounds_text(ours)}) | {ours['cpu_s']:.2f} s "
            f"({ours['cpu_s'] / 60 * 100:.1f} % of a core) | |"
        )
        print(f"| voicebox peak RSS (whole process) | {ours['rss_mb']:.1f} MB | <= 60 MB |")
        print(
            f"| user turns heard / agent audio played in {seconds:.0f} s | {ours['turns']} / "
            f"{ours['played_bytes'] / 32000:.1f} s | |"
        )
    if ours is not None and sdk is not None:
        print(
            f"| SDK AsyncConversation CPU, same conversation, whole process (permessage-deflate, "
            f"which the simulator negotiates; {rounds_text(sdk)}) | {sdk['cpu_s']:.2f} s | |"
        )
        if plain is not None:
            print(
                f"| SDK CPU with compression=None, the same wire as voicebox "
                f"({rounds_text(plain)}) | {plain['cpu_s']:.2f} s | |"
            )
        print(f"| SDK peak RSS | {sdk['rss_mb']:.1f} MB | |")
        print(
            f"| SDK user turns heard / agent audio played in {seconds:.0f} s | {sdk['turns']} / "
            f"{sdk['played_bytes'] / 32000:.1f} s | |"
        )
        if floor is not None:
            f = floor["cpu_s"]
            print(
                f"| the mic clock alone: thread, schedule and hand-off into a no-op "
                f"({rounds_text(floor)}) | {f:.2f} s | |"
            )
            for name, other, target in (
                ("SDK", sdk, "<= 0.5"),
                ("SDK without deflate", plain, ""),
            ):
                if other is None:
                    continue
                own = (ours["cpu_s"] - f) / (other["cpu_s"] - f) if other["cpu_s"] > f else None
                text = f"{own:.2f}" if own is not None else "n/a"
                print(
                    f"| CPU ratio, the client's own (above the mic clock), voicebox / {name} "
                    f"| {text} | {target} |"
                )
        ratio = ours["cpu_s"] / sdk["cpu_s"] if sdk["cpu_s"] else float("nan")
        print(f"| CPU ratio, whole process with the mic clock, voicebox / SDK | {ratio:.2f} | |")
        if plain is not None:
            r = ours["cpu_s"] / plain["cpu_s"]
            print(f"| CPU ratio, whole process, voicebox / SDK without deflate | {r:.2f} | |")
        print(f"| RSS ratio voicebox / SDK | {ours['rss_mb'] / sdk['rss_mb']:.2f} | |")
    print()
    print(
        "The SDK does not reconnect; its rows cover only the conversation itself. Both clients"
        " get the same 20 ms mic chunks from a thread on a real-time schedule, handed to the"
        " event loop as each one's audio input does it (voicebox's capture: call_soon_threadsafe;"
        " the SDK's AsyncDefaultAudioInterface: run_coroutine_threadsafe); audio output goes to a"
        " null sink. The mic clock (the thread's wakeups and the loop's, which a sound card would"
        " cause as well) is in both whole-process figures and is the same for both, so the"
        " client's own CPU is the figure above it; the target row compares that. The SDK offers"
        " permessage-deflate and the simulator accepts it (whether the real service does is not"
        " known), so the SDK is also measured with compression off, on the same wire as voicebox."
        " CPU figures are per minute of conversation."
    )


def rounds_text(run: dict[str, Any]) -> str:
    rounds = run.get("cpu_rounds", [])
    return f"rounds {' / '.join(f'{x:.2f}' for x in rounds)}" if len(rounds) > 1 else "1 round"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["voicebox", "sdk", "sdk_plain", "floor"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.port, args.seconds)
        return 0
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(bench(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
