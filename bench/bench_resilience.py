"""Link faults side by side: voicebox's Supervisor vs the official SDK's AsyncConversation.

For each scenario both clients talk, at the same time, to their own simulator with the same
SimConfig and the same 20 ms mic script (speech 1.5 s, pause 2.5 s). The fault is injected
FAULT_AT_S after the user's audio first reaches the agent (the duration cap and the HTTP 503 come
from the simulator itself). A 10 ms poll of the simulator's records gives when user audio arrived
on which connection; nothing here is taken from documentation.
Usage: bench_resilience.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_convai import NullAudio, config, feed, user_script  # noqa: E402

from voicebox.convai.supervisor import Supervisor  # noqa: E402
from voicebox.convai.tools import ToolRegistry  # noqa: E402
from voicebox.simulator.faults import parse_fault  # noqa: E402
from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402
from voicebox.state import State  # noqa: E402

FAULT_AT_S = 3.0
POLL_S = 0.01


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    inject: str | None = None  # applied to connection 1 at FAULT_AT_S
    sim: dict[str, Any] = field(default_factory=dict)  # SimConfig changes
    seconds: float | None = None  # run length when it must differ from the others


SCENARIOS = [
    Scenario("1012", "1012 close (service restart)", inject="1:close:1012"),
    Scenario("drop", "TCP drop, no close frame (1006)", inject="1:drop"),
    Scenario("silent", "half-open link (silent, socket open)", inject="1:silent", seconds=25.0),
    Scenario("cap", "duration cap (max_duration_s=6)", sim={"max_duration_s": 6.0}),
    Scenario("1008", "1008 policy close (config error)", inject="1:close:1008"),
    Scenario(
        "503", "HTTP 503 at the first handshake", sim={"faults": (parse_fault("1:http:503"),)}
    ),
]


@dataclass
class Outcome:
    """What one client did in one scenario, measured at the simulator and in the client."""

    fault_at: float | None = None  # loop time of the fault
    first_audio: dict[int, float] = field(default_factory=dict)  # connection -> first audio
    arrivals: list[float] = field(default_factory=list)  # times the agent's audio count grew
    detected_at: float | None = None
    report: str = ""  # what the client itself said about the failure
    sessions: int = 0  # handshakes that got conversation metadata
    handshakes: int = 0
    context_updates: int = 0  # contextual_update frames received by sessions after the first
    user_audio_s: float = 0.0
    fed_s: float = 0.0


async def watch(sim: Simulator, out: Outcome, stop: asyncio.Event) -> None:
    """Poll the simulator's records: first user audio per connection, and audio arrival times."""
    loop = asyncio.get_running_loop()
    last = 0
    while not stop.is_set():
        now = loop.time()
        total = 0
        for c in sim.connections:
            total += c.user_audio_chunks
            if c.user_audio_chunks and c.index not in out.first_audio:
                out.first_audio[c.index] = now
        if total > last:
            out.arrivals.append(now)
            last = total
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)


async def fault_timer(sc: Scenario, sim: Simulator, out: Outcome) -> None:
    """Mark the fault time; inject it when the scenario has one."""
    loop = asyncio.get_running_loop()
    if sc.name == "503":
        out.fault_at = loop.time()
        return
    conn = await sim.wait_connection(1, timeout=30)
    await sim.wait_for(lambda: conn.user_audio_chunks > 0, timeout=30)
    if sc.name == "cap":
        await sim.wait_for(lambda: conn.closed, timeout=60)
        out.fault_at = loop.time()
        return
    await asyncio.sleep(FAULT_AT_S)
    assert sc.inject is not None
    out.fault_at = loop.time()
    await sim.inject(sc.inject, 1)


def finish(sim: Simulator, out: Outcome) -> None:
    out.handshakes = len(sim.connections)
    out.sessions = sum(1 for c in sim.connections if c.metadata_sent)
    out.context_updates = sum(len(c.contextual_updates) for c in sim.connections[1:])
    out.user_audio_s = sum(c.user_audio_s for c in sim.connections)


async def run_voicebox(sc: Scenario, seconds: float) -> Outcome:
    out = Outcome()
    loop = asyncio.get_running_loop()
    sim = Simulator(SimConfig(**{"first_message": "", **sc.sim}))
    await sim.start()
    states: list[tuple[float, State, dict[str, Any]]] = []

    def on_state(state: State, fields: dict[str, Any]) -> None:
        states.append((loop.time(), state, fields))
        if (
            out.fault_at is not None
            and out.detected_at is None
            and state not in (State.LISTENING, State.SPEAKING, State.STOPPING)
        ):
            out.detected_at = loop.time()
            out.report = f"{state}" + (f" ({fields['reason']})" if "reason" in fields else "")

    audio = NullAudio()
    sup = Supervisor(config(sim.url), audio, None, ToolRegistry(), on_state)
    await audio.start(sup.on_mic_chunk)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(sup.run()),
        asyncio.create_task(watch(sim, out, stop)),
        asyncio.create_task(fault_timer(sc, sim, out)),
    ]
    first_close: dict[str, Any] = {}

    async def closes() -> None:  # a session that ends without a state change (cap, rollover)
        while out.detected_at is None:
            close = sup.snapshot()["last_close"]
            if out.fault_at is not None and close and not first_close:
                first_close.update(close)
                out.detected_at = loop.time()
                out.report = f"session closed: {close.get('class')} ({close.get('why')})"
            await asyncio.sleep(POLL_S)

    tasks.append(asyncio.create_task(closes()))
    await feed(sup.on_mic_chunk, user_script(seconds), seconds)
    out.fed_s = seconds
    if out.detected_at is None:
        out.report = f"nothing ({states[-1][1] if states else 'no state change'})"
    snap = sup.snapshot()
    close = snap["last_close"]
    if close:
        out.report += f"; last close {close.get('code')} {close.get('class')}"
    await sup.stop()
    stop.set()
    await finish_tasks(tasks)
    finish(sim, out)
    await sim.stop()
    return out


async def run_sdk(sc: Scenario, seconds: float) -> Outcome:
    warnings.simplefilter("ignore")
    from elevenlabs.client import ElevenLabs
    from elevenlabs.conversational_ai.conversation import (
        AsyncAudioInterface,
        AsyncConversation,
        DisconnectionDetails,
    )

    out = Outcome()
    loop = asyncio.get_running_loop()
    sim = Simulator(SimConfig(**{"first_message": "", **sc.sim}))
    await sim.start()
    chunks = user_script(seconds)
    t0 = loop.time()

    class Feeder(AsyncAudioInterface):  # type: ignore[misc]
        """Plays into nothing; feeds the mic script on the same real-time schedule."""

        task: asyncio.Task[None] | None = None

        async def start(self, input_callback: Any) -> None:
            async def pump(c: np.ndarray[Any, Any]) -> None:
                await input_callback(c.tobytes())

            self.task = asyncio.create_task(feed(pump, chunks, seconds))

        async def stop(self) -> None:
            if self.task is not None:
                self.task.cancel()

        async def output(self, audio: bytes) -> None:
            pass

        async def interrupt(self) -> None:
            pass

    ending = False

    async def on_disconnect(details: DisconnectionDetails) -> None:
        if ending:
            return
        if out.detected_at is None:
            out.detected_at = loop.time()
        out.report = (
            f"callback_disconnect(reason={details.reason}, code={details.close_code}"
            + (f", {details.close_reason!r}" if details.close_reason else "")
            + ")"
        )

    client = ElevenLabs(api_key="bench", base_url=sim.url)
    conv = AsyncConversation(
        client,
        "bench",
        requires_auth=False,
        audio_interface=Feeder(),
        callback_disconnect=on_disconnect,
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(watch(sim, out, stop)),
        asyncio.create_task(fault_timer(sc, sim, out)),
    ]
    await conv.start_session()
    await asyncio.sleep(max(0.0, t0 + seconds - loop.time()))
    out.fed_s = seconds
    task = conv._task
    if task is not None and task.done() and not task.cancelled() and task.exception():
        exc = task.exception()
        out.report += f"; task raised {type(exc).__name__}: {str(exc)[:60]}"
    if out.detected_at is None:
        out.report = "nothing (session still open)"
    ending = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conv.end_session(), 5)
    if task is not None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)
    stop.set()
    await finish_tasks(tasks)
    finish(sim, out)
    await sim.stop()
    return out


async def finish_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        if not t.done():
            t.cancel()
    for t in tasks:
        with contextlib.suppress(BaseException):
            await t


def cells(sc: Scenario, o: Outcome) -> dict[str, str]:
    """The table cells for one client in one scenario."""
    fault = o.fault_at
    later = [t for i, t in o.first_audio.items() if i > 1 or sc.name == "503"]
    resumed = [t for t in later if fault is not None and t >= fault - 0.5]
    if sc.name == "cap":  # a rollover may open the next session before the cap
        resumed = later
    cont = "yes" if resumed else "**no**"
    if resumed and fault is not None:
        cont += f", {max(0.0, min(resumed) - fault) * 1000:.0f} ms"
    gaps = [b - a for a, b in zip(o.arrivals, o.arrivals[1:], strict=False)]
    gap = f"{max(gaps) * 1000:.0f} ms" if gaps else "-"
    if fault is not None and o.arrivals and o.arrivals[-1] < fault + 1.0:
        gap = "stopped"
    if o.detected_at is not None and fault is not None:
        det = f"{max(0.0, o.detected_at - fault) * 1000:.0f} ms"
    else:
        det = "**not within the run**"
    return {
        "continued": cont,
        "gap": gap,
        "detected": det,
        "sessions": f"{o.sessions} / {o.handshakes}",
        "context": str(o.context_updates),
        "audio": f"{o.user_audio_s:.1f} / {o.fed_s:.0f} s",
        "report": o.report.replace("|", "/") or "-",
    }


async def bench(names: list[str], seconds: float) -> list[tuple[Scenario, Outcome, Outcome]]:
    results = []
    for sc in SCENARIOS:
        if names and sc.name not in names:
            continue
        length = sc.seconds if sc.seconds and seconds >= 15 else seconds
        ours, sdk = await asyncio.gather(run_voicebox(sc, length), run_sdk(sc, length))
        results.append((sc, ours, sdk))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scenario (1012), 10 s")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="scenario names: " + " ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--seconds", type=float, default=None, help="per scenario (default 15)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    names = args.only or (["1012"] if args.quick else [])
    seconds = args.seconds or (10.0 if args.quick else 15.0)
    results = asyncio.run(bench(names, seconds))
    print("Link faults: voicebox vs the official SDK (AsyncConversation), same simulator and mic")
    print()
    print(
        f"Each scenario runs {seconds:g} s of always_on conversation per client; the fault hits "
        f"connection 1 {FAULT_AT_S:g} s after user audio first reaches the agent (the half-open "
        "link runs 25 s in the full run). voicebox runs its default config."
    )
    print()
    print(
        "| scenario | client | conversation continued, fault to user audio on a new session "
        "| longest gap in user audio at the agent | failure detected after | sessions / "
        "handshakes | contextual_update in later sessions | user audio at the agent / fed "
        "| what the client reported |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    sdk_name = f"SDK {importlib.metadata.version('elevenlabs')}"
    for sc, ours, sdk in results:
        for who, o in (("voicebox", ours), (sdk_name, sdk)):
            c = cells(sc, o)
            print(
                f"| {sc.label} | {who} | {c['continued']} | {c['gap']} | {c['detected']} | "
                f"{c['sessions']} | {c['context']} | {c['audio']} | {c['report']} |"
            )
    print()
    print(
        "Continued: user audio reached the agent on a later session. Longest gap: the longest "
        "interval between two increments of the agent's received-chunk count (10 ms poll); "
        "'stopped' = no user audio arrived after the fault. Detected: fault to voicebox's first "
        "state change away from listening/speaking, or to the SDK's callback_disconnect. For the "
        "cap, the fault time is the simulator's close at the cap; for 503, the start."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
