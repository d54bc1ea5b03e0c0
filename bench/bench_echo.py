"""Echo cancellation in simulated rooms: ERLE, self-interruptions, barge-in detection, CPU, RSS.

Each room plays minutes of agent replies (the simulator's voice, 20 harmonics) through a room
impulse response into the mic, on the device timeline the tests use (tests/audio/echo_rooms.py:
PortAudio-like stamps, 20 ms blocks, 100 ms output and 30 ms input buffering), and runs the mic
through voicebox's CaptureProcessor. What reaches "the service" is judged by the simulator's own
energy VAD (-40 dBFS, 60 ms to start): a speech start while only the agent talks is a
self-interruption; user bursts spoken over the agent must each start one (barge-in).
Then live, against voicebox's simulator, which counts interruptions and turns: the official
SDK (elevenlabs' Conversation with an AudioInterface in the same simulated rooms; it has no
canceller), `voicebox run` hands-free in the small room with processing off and on (its CPU and
RSS from outside: psutil, `voicebox status --json`), and the same daemon in a real PulseAudio
room (tests/audio/pulse_room.py) when pulseaudio is installed.
Usage: .venv/bin/python bench/bench_echo.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.audio import pulse_room as pa  # noqa: E402
from tests.audio.echo_rooms import RATE, run_room  # noqa: E402
from tests.audio.test_echo_pulse_e2e import SPREAD_S, Echo, Timeline  # noqa: E402
from voicebox.audio.echo import linear_echo  # noqa: E402
from voicebox.audio.room import Room, impulse_response  # noqa: E402
from voicebox.simulator.server import SimConfig, SimConnection, Simulator  # noqa: E402
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
from voicebox.audio.echo.history import StampedHistory
from voicebox.audio.echo.processor import CaptureProcessor, ProcessingSettings
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


# --- live runs against the simulator: the official SDK, the daemon, the PulseAudio room --------

LIVE_RATE = 16000  # the wire format both ways (pcm_16000)
PERIOD = 0.02  # the SDK room's device period
SDK_OUT_LATENCY = 0.100  # its speaker: DAC time - the time a block is handed over
SDK_IN_LATENCY = 0.030  # its mic: the time a block is delivered - its ADC time
SDK_CHUNK = 4000  # samples per input_callback: DefaultAudioInterface's 250 ms
FIRST = "Hello, I am the agent in the room, and I will keep talking for a little while now."
USER_SLACK_S = 1.0  # an interruption this long after a user burst ends is the user's
TURN_SLACK_S = 1.8  # a turn ending this long after a user burst ends is the user's


def live_simulator() -> Simulator:
    """The simulated agent every live run talks to (a voice as wide as a voice, audio kept)."""
    return Simulator(
        SimConfig(
            first_message=FIRST,
            ping_interval_s=1.0,
            reply_delay_s=0.1,
            voice_harmonics=20,
            record_audio=True,
        )
    )


class TurnTimes(logging.Handler):
    """Loop-clock times at which the simulator ended each user turn, per connection."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[int, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "EVENT", None) == "sim.turn":
            self.times.setdefault(int(getattr(record, "CONN", 0)), []).append(time.monotonic())


@contextlib.contextmanager
def turn_times() -> Iterator[TurnTimes]:
    """Record the simulator's turn ends while the block runs (its logger, nothing printed)."""
    sim_log = logging.getLogger("voicebox.simulator")
    handler = TurnTimes()
    old = (sim_log.level, sim_log.propagate)
    sim_log.addHandler(handler)
    sim_log.setLevel(logging.INFO)
    sim_log.propagate = False
    try:
        yield handler
    finally:
        sim_log.removeHandler(handler)
        sim_log.setLevel(old[0])
        sim_log.propagate = old[1]


def user_bursts(seconds: float, first_s: float, seed: int) -> tuple[Any, list[tuple[float, float]]]:
    """The user in the room: 1 s bursts from first_s on, in pairs: the second 2.2-2.6 s after
    the first, over the simulator's reply to it (which starts ~0.7 s after the burst ends and
    lasts ~1.9 s): a barge-in; the next pair 5.5-7.5 s later, after the reply to the barge-in
    (as int16 samples, and their (start, end) in seconds from the start of the samples)."""
    rng = np.random.default_rng(seed)
    user = np.zeros(int(seconds * LIVE_RATE), dtype=np.int16)
    spans = []
    t = first_s
    while t + 1.0 < seconds:
        burst = speech_like(1.0, LIVE_RATE, f0=float(rng.uniform(100, 130)), level=0.3)
        a = int(t * LIVE_RATE)
        user[a : a + len(burst)] = burst
        spans.append((t, t + 1.0))
        t += float(rng.uniform(2.2, 2.6) if len(spans) % 2 else rng.uniform(5.5, 7.5))
    return user, spans


@dataclass
class Live:
    """What the simulator saw of one client over one run (times on the loop clock)."""

    name: str
    start: float  # the span measured
    end: float
    agent_s: float  # agent speech sent that had time to play (cut where interrupted)
    interruptions: list[float]
    turns: list[float]
    bursts: list[tuple[float, float]]  # the user's bursts as played into the room
    echo: Echo | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    played_s: float | None = None  # agent audio the client's speaker played (the SDK's room)
    late: int = 0  # periods the SDK's room threads ran more than a period late
    speaking: list[tuple[float, float]] = field(default_factory=list)  # replies as they played
    note: str = ""

    @property
    def own_interruptions(self) -> int:
        return sum(
            not any(a - 0.1 <= t <= b + USER_SLACK_S for a, b in self.bursts)
            for t in self.interruptions
        )

    @property
    def own_turns(self) -> int:
        return sum(not any(a <= t <= b + TURN_SLACK_S for a, b in self.bursts) for t in self.turns)

    @property
    def heard(self) -> float:
        """Share of the user's bursts the simulator heard (an interruption or a turn)."""
        got = sum(
            any(a - 0.1 <= t <= b + USER_SLACK_S for t in self.interruptions)
            or any(a <= t <= b + TURN_SLACK_S for t in self.turns)
            for a, b in self.bursts
        )
        return got / max(1, len(self.bursts))

    @property
    def barge_ins(self) -> tuple[int, int]:
        """(detected, all) of the bursts that began while a reply was playing at the simulator:
        detected when the simulator cut that reply (an interruption during or just after)."""
        over = [(a, b) for a, b in self.bursts if any(s <= a < e for s, e in self.speaking)]
        got = sum(
            any(a - 0.1 <= t <= b + USER_SLACK_S for t in self.interruptions) for a, b in over
        )
        return got, len(over)

    def per_10_min(self, count: int) -> float:
        return count * 600.0 / max(self.agent_s, 1e-9)


def simulator_view(
    name: str, conn: SimConnection, turns: list[float], start: float, end: float
) -> Live:
    """Agent speech, interruption times and turn ends of one connection within [start, end]."""
    agent_s = 0.0
    cuts = []
    speaking = []
    for reply in conn.sent_replies:
        length = len(reply.pcm) / 2 / LIVE_RATE if reply.played_s is None else reply.played_s
        agent_s += max(0.0, min(reply.start + length, end) - max(reply.start, start))
        speaking.append((reply.start, reply.start + length))
        if reply.played_s is not None:
            cuts.append(reply.start + reply.played_s)
    live = Live(
        name,
        start,
        end,
        agent_s,
        [t for t in cuts if start <= t <= end],
        [t for t in turns if start <= t <= end],
        [],
    )
    live.speaking = speaking
    return live


def received_base(conn: SimConnection) -> float:
    """Loop time of the first received sample (as test_echo_pulse_e2e.Timeline counts it)."""
    first_at, first = conn.received_audio[0]
    return first_at - len(first) / 2 / LIVE_RATE


def echo_level(
    conn: SimConnection, bursts: list[tuple[float, float]], near_lag: int | None = None
) -> Echo | None:
    """The agent's voice in what the simulator received, in dB relative to what it sent, with
    what lands on the user's bursts left out (test_echo_pulse_e2e's measure). The echo's delay
    is where the correlation peaks; with the echo cancelled that peak is noise, so a delay
    further than SPREAD_S from near_lag (the same room unprocessed) gives way to near_lag."""
    if not conn.received_audio or not conn.sent_replies:
        return None
    heard = Timeline.of(conn)
    lag = heard.lag()
    if near_lag is not None and abs(lag - near_lag) > SPREAD_S * LIVE_RATE:
        lag = near_lag
    base = received_base(conn)
    n = len(heard.received)
    for a, b in bursts:
        lo = round((a - 0.3 - base) * LIVE_RATE) - lag
        hi = round((b + 0.6 - base) * LIVE_RATE) - lag
        heard.voiced[max(0, lo) : max(0, min(n, hi))] = False
    return heard.echo(lag)


def wav_start(conn: SimConnection, user: Any) -> float:
    """Loop time at which the daemon's mic began the user's WAV: where the WAV best matches what
    the simulator received (the WAV starts with the engine, before the session)."""
    received = np.concatenate(
        [np.frombuffer(d, dtype="<i2") for _, d in conn.received_audio]
    ).astype(np.float64)
    u = np.asarray(user, dtype=np.float64)
    n = len(u) + len(received)
    corr = np.fft.irfft(np.fft.rfft(u, n) * np.conj(np.fft.rfft(received, n)), n)
    d = int(np.argmax(corr[: min(len(u), 15 * LIVE_RATE)]))  # received[i] ~ user[i + d]
    return received_base(conn) - d / LIVE_RATE


# --- the official SDK in the simulated room ---------------------------------------------------


def sdk_interface(room: Room, user: Any) -> Any:
    """An AudioInterface for elevenlabs.conversational_ai.conversation.Conversation in a room.

    Like the SDK's DefaultAudioInterface on a speaker and a microphone: output() queues what the
    SDK hands it and a speaker thread plays it (20 ms periods, silence when nothing is queued,
    SDK_OUT_LATENCY to the DAC) into the room; interrupt() drops what is queued; a mic thread
    hears the room (the echo of what was played, plus the user's samples, plus noise) one period
    at a time and hands 250 ms at a time to the SDK's input_callback, from its own thread."""
    from elevenlabs.conversational_ai.conversation import AudioInterface

    block = room.block

    class RoomInterface(AudioInterface):  # type: ignore[misc]
        def __init__(self) -> None:
            self.pending = bytearray()
            self.lock = threading.Lock()
            self.stopping = threading.Event()
            self.t0 = 0.0
            self.played_s = 0.0  # agent audio the speaker played
            self.late = 0  # periods a thread ran more than a period late (a loaded machine)
            self.threads: list[threading.Thread] = []

        def start(self, input_callback: Any) -> None:
            self.t0 = time.monotonic() + 0.05
            self.threads = [
                threading.Thread(target=self._speaker, name="sdk-speaker", daemon=True),
                threading.Thread(target=self._mic, args=(input_callback,), daemon=True),
            ]
            for t in self.threads:
                t.start()

        def stop(self) -> None:
            self.stopping.set()
            for t in self.threads:
                t.join(5)

        def output(self, audio: bytes) -> None:
            with self.lock:
                self.pending += audio

        def interrupt(self) -> None:
            with self.lock:
                self.pending.clear()

        def _wait(self, due: float) -> bool:
            now = time.monotonic()
            if now < due:
                self.stopping.wait(due - now)
            elif now > due + PERIOD:
                self.late += 1
            return not self.stopping.is_set()

        def _speaker(self) -> None:
            k = 0
            while self._wait(self.t0 + k * PERIOD):
                with self.lock:
                    data = bytes(self.pending[: 2 * block])
                    del self.pending[: 2 * block]
                out = np.zeros(block, dtype=np.int16)
                got = np.frombuffer(data, dtype="<i2")
                out[: len(got)] = got
                if len(got):
                    self.played_s += len(got) / room.rate
                due = self.t0 + k * PERIOD
                room.play(out, due + SDK_OUT_LATENCY, due)
                k += 1

        def _mic(self, input_callback: Any) -> None:
            j = 0
            heard = np.zeros(block, dtype=np.int16)
            said = np.zeros(block, dtype=np.int16)
            chunk = bytearray()
            while self._wait(self.t0 + (j + 1) * PERIOD + SDK_IN_LATENCY):
                part = user[j * block : (j + 1) * block]
                said[:] = 0
                said[: len(part)] = part
                room.hear(self.t0 + j * PERIOD, said, heard)
                chunk += heard.astype("<i2").tobytes()
                if len(chunk) >= 2 * SDK_CHUNK:
                    input_callback(bytes(chunk[: 2 * SDK_CHUNK]))
                    del chunk[: 2 * SDK_CHUNK]
                j += 1

    return RoomInterface()


def sim_room(spec: RoomSpec) -> Room:
    """voicebox.audio.room's Room at 16 kHz, 20 ms blocks, -65 dBFS of noise, for one RoomSpec."""
    ir = impulse_response(
        LIVE_RATE, spec.delay_ms, spec.tail_ms, spec.echo_db, seed=3, direct_db=spec.direct_db
    )
    return Room(LIVE_RATE, ir, int(LIVE_RATE * PERIOD), noise_dbfs=-65.0)


async def sdk_in_rooms(rooms: tuple[RoomSpec, ...], seconds: float) -> list[Live]:
    """The official SDK's Conversation (threads and a blocking WebSocket, as its example runs
    it), one per room at once, against one simulator, each for `seconds`."""
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("elevenlabs").setLevel(logging.CRITICAL)
    from elevenlabs.client import ElevenLabs
    from elevenlabs.conversational_ai.conversation import Conversation

    with turn_times() as turns:
        sim = live_simulator()
        await sim.start()
        client = ElevenLabs(api_key="bench", base_url=sim.url)
        runs = []
        for i, spec in enumerate(rooms):
            user, spans = user_bursts(seconds + 5, 4.0, seed=10 + i)
            iface = sdk_interface(sim_room(spec), user)
            conv = Conversation(client, "bench", requires_auth=False, audio_interface=iface)
            conv.start_session()
            conn = await sim.wait_connection(i + 1, timeout=30)
            await sim.wait_for(lambda c=conn: c.user_audio_chunks > 0, timeout=30)  # type: ignore[misc]
            runs.append((spec, conv, iface, conn, spans))
        await asyncio.sleep(seconds)
        end = time.monotonic()
        out = []
        for spec, conv, iface, conn, spans in runs:
            conv.end_session()
            await asyncio.get_running_loop().run_in_executor(None, conv.wait_for_session_end)
            start = iface.t0
            live = simulator_view(spec.name, conn, turns.times.get(conn.index, []), start, end)
            live.bursts = [(start + a, start + b) for a, b in spans if start + b <= end]
            live.echo = echo_level(conn, live.bursts)
            live.played_s = iface.played_s
            live.late = iface.late
            out.append(live)
        await sim.stop()
    return out


# --- the daemon itself: `voicebox run` in the simulated room and in the PulseAudio room -------

ROOM_AUDIO = """  input:
    backend: room
    path: {wav}
    room: {{delay_ms: {delay_ms}, tail_ms: {tail_ms}, echo_db: {echo_db}, direct_db: {direct_db},
            noise_dbfs: -65}}
  output: {{backend: file, path: {speaker}}}"""
PULSE_AUDIO = """  input: {backend: sounddevice, device: default}
  output: {backend: sounddevice, device: default}"""
LIVE_DIRS = ("room-off", "room-on", "pulse-0", "pulse-1")  # one per daemon run
PROCESSING_ON = "{echo_cancellation: on}"  # the shipped defaults otherwise (NS moderate, HPF)
PROCESSING_OFF = "{echo_cancellation: off, noise_suppression: off, high_pass: false}"


def daemon_config(tmp: Path, api_base: str, audio: str, processing: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""# written by bench/bench_echo.py
agent:
  agent_id: bench_echo
  api_base: {api_base}
audio:
{audio}
  processing: {processing}
conversation:
  mode: always_on
gpio:
  button: {{pin: null}}
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
""",
        encoding="utf-8",
    )
    return path


async def daemon_status(tmp: Path) -> dict[str, Any]:
    """`voicebox status --json` of the daemon under test."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "status", "--json", "--socket",
        str(tmp / "run" / "status.sock"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    snap: dict[str, Any] = json.loads(out) if proc.returncode == 0 else {}
    return snap


async def daemon_run(
    name: str,
    tmp: Path,
    audio: str,
    processing: str,
    seconds: float,
    env: dict[str, str],
    say: Any = None,
) -> tuple[Live, SimConnection, Any]:
    """`voicebox run` against a fresh simulator for `seconds` after its session opened, measured
    from outside: the simulator's view, the process's CPU and RSS (psutil) and the processing's
    CPU seconds (`voicebox status --json`) over the same span. `say(room_time)`: an async
    callable that speaks the user's part and returns the bursts' loop times."""
    import psutil

    with turn_times() as turns:
        sim = live_simulator()
        await sim.start()
        cfg = daemon_config(tmp, sim.url, audio, processing)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "run", "--config", str(cfg),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        lines: list[str] = []

        async def read_log() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                lines.append(raw.decode(errors="replace").rstrip())

        reader = asyncio.create_task(read_log())
        bursts: list[tuple[float, float]] = []
        try:
            conn = await sim.wait_connection(1, timeout=30)
            await sim.wait_for(lambda: conn.user_audio_chunks > 0, timeout=30)
            ps = psutil.Process(proc.pid)
            before = await daemon_status(tmp)
            t0, cpu0 = time.monotonic(), sum(ps.cpu_times()[:2])
            if say is not None:
                bursts = await say(seconds)
            else:
                await asyncio.sleep(seconds)
            after = await daemon_status(tmp)
            t1, cpu1 = time.monotonic(), sum(ps.cpu_times()[:2])
            rss = ps.memory_info().rss / 2**20
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await reader
            await sim.stop()
    live = simulator_view(name, conn, turns.times.get(conn.index, []), t0, t1)
    live.bursts = [(a, b) for a, b in bursts if t0 <= b <= t1]
    a0, a1 = before.get("audio", {}), after.get("audio", {})
    live.cpu = {
        "daemon_s": cpu1 - cpu0,
        "processing_s": float(a1.get("processing_cpu_s", 0.0))
        - float(a0.get("processing_cpu_s", 0.0)),
        "rss_mb": rss,
        "erle_db": a1.get("erle_db"),
        "delay_ms": a1.get("echo_delay_ms"),
    }
    if "Traceback" in "\n".join(lines) or proc.returncode != 0:
        live.note = f"daemon exit {proc.returncode}; " + " | ".join(lines[-3:])
    return live, conn, lines


async def daemon_in_sim_room(
    spec: RoomSpec, processing: str, seconds: float, tmp: Path, near_lag: int | None = None
) -> Live:
    """The daemon hands-free in the simulated room (audio.input.backend: room): the user's WAV
    holds the bursts; where it began on the loop clock is found from what the simulator got."""
    wav = tmp / "user.wav"
    user, spans = user_bursts(seconds + 40, 5.0, seed=7)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(LIVE_RATE)
        w.writeframes(user.astype("<i2").tobytes())
    audio = ROOM_AUDIO.format(
        wav=wav,
        speaker=tmp / "speaker.wav",
        delay_ms=spec.delay_ms,
        tail_ms=spec.tail_ms,
        echo_db=spec.echo_db,
        direct_db="null" if spec.direct_db is None else spec.direct_db,
    )
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    name = "on" if processing == PROCESSING_ON else "off"
    live, conn, _ = await daemon_run(name, tmp, audio, processing, seconds, env)
    if conn.received_audio:
        begun = wav_start(conn, user)
        heard = [(begun + a, begun + b) for a, b in spans]
        live.bursts = [(a, b) for a, b in heard if live.start <= b <= live.end]
        live.echo = echo_level(conn, heard, near_lag)
    return live


async def daemon_in_pulse_room(
    room: pa.PulseRoom, processing: str, seconds: float, tmp: Path, near_lag: int | None = None
) -> Live:
    """The daemon on its sounddevice backend in a PulseAudio room (tests/audio/pulse_room.py:
    the speaker's monitor looped into the mic at -6 dB after 50 ms), the user's bursts played
    into the mic's sink with paplay."""
    name = "on" if processing == PROCESSING_ON else "off"
    user, spans = user_bursts(seconds + 5, 4.0, seed=11)

    async def say(span_s: float) -> list[tuple[float, float]]:
        start = time.monotonic()
        played, bursts = [], []
        for a, b in spans:
            if a + 1.0 > span_s:
                break
            await asyncio.sleep(max(0.0, start + a - time.monotonic()))
            at = time.monotonic()
            clip = user[int(a * LIVE_RATE) : int(b * LIVE_RATE)]
            played.append(room.say(clip))
            bursts.append((at, at + (b - a) + 0.1))  # paplay's own start-up
        await asyncio.sleep(max(0.0, start + span_s - time.monotonic()))
        for p in played:
            await asyncio.to_thread(p.wait, 10)
        return bursts

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **room.client_env()}
    live, conn, _ = await daemon_run(name, tmp, PULSE_AUDIO, processing, seconds, env, say=say)
    live.echo = echo_level(conn, live.bursts, near_lag)
    return live


def _direct(room: RoomSpec) -> str:
    return "tail only" if room.direct_db is None else f"{room.direct_db:+.0f} dB"


def _rate(live: Live, count: int) -> str:
    return f"{live.per_10_min(count):.0f} ({count})"


def _ratio(ours: float, sdk: float) -> str:
    return "n/a" if sdk <= 0 else f"{ours / sdk:.2f}"


SETTLED_S = 15.0  # barge-ins are also counted from here on (start-up half duplex over)


def offline_rooms(minutes: float) -> tuple[list[tuple[Any, ...]], str]:
    """The rooms through CaptureProcessor on the synthetic device timeline (no daemon)."""
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
        with mock.patch.object(linear_echo, "available", lambda: False):  # AEC3 alone
            alone = run_room(far, near, **common)  # type: ignore[arg-type]
        alone_rate, alone_detect = judge(alone.out, bursts, agent_minutes)
        # the first seconds are half duplex until the canceller is trusted (and again once
        # speexdsp's filter starts feeding AEC3): bursts after that
        settled = [(a, b) for a, b in bursts if a >= SETTLED_S * RATE]
        on_settled = judge(on.out, settled, agent_minutes)[1]
        stats = on.processor.snapshot()
        cpu_per_min = stats.cpu_s / (wall / 60)
        rows.append(
            (
                room,
                erle,
                off_rate,
                on_rate,
                on_detect,
                off_detect,
                cpu_per_min,
                stats.erle_db,
                alone_rate,
                alone_detect,
                on_settled,
            )  # fmt: skip
        )
        if room.name == "small":
            first = int(np.flatnonzero(np.abs(far[15 * RATE :]) > 0)[0]) / RATE + 15
            plotted = str(plot(room, far, solo.mic, solo.out, first - 0.3, 4.5))
    return rows, plotted


async def live_runs(quick: bool, tmp: Path) -> dict[str, Any]:
    """The SDK in every room alongside the daemon unprocessed in the small room and in the
    PulseAudio room (their CPU is not a figure); then the daemon processing alone in each (the
    simulated room's CPU is the figure). Each PulseAudio room is started before the runs that
    share the event loop with the simulators (its start blocks)."""
    sdk_s = 30.0 if quick else 90.0
    daemon_s = 20.0 if quick else 60.0
    pulse_s = 15.0 if quick else 30.0
    small = ROOMS[0]
    why = pa.missing()
    with contextlib.ExitStack() as stack:
        runs: list[Awaitable[Any]] = [
            sdk_in_rooms(ROOMS, sdk_s),
            daemon_in_sim_room(small, PROCESSING_OFF, daemon_s, tmp / "room-off"),
        ]
        if why is None:
            room = stack.enter_context(pa.pulse_room(tmp / "pulse-0" / "pulseaudio.log"))
            runs.append(daemon_in_pulse_room(room, PROCESSING_OFF, pulse_s, tmp / "pulse-0"))
        sdk, off, *p_off = await asyncio.gather(*runs)
    lag = None if off.echo is None else off.echo.lag
    on = await daemon_in_sim_room(small, PROCESSING_ON, daemon_s, tmp / "room-on", lag)
    pulse: list[Live] | str = why or []
    if why is None:
        lag = None if p_off[0].echo is None else p_off[0].echo.lag
        with pa.pulse_room(tmp / "pulse-1" / "pulseaudio.log") as room:
            p_on = await daemon_in_pulse_room(room, PROCESSING_ON, pulse_s, tmp / "pulse-1", lag)
        pulse = [p_off[0], p_on]
    return {"sdk": sdk, "off": off, "on": on, "pulse": pulse, "seconds": (sdk_s, daemon_s, pulse_s)}


def print_live(live: dict[str, Any]) -> None:
    sdk: list[Live] = live["sdk"]
    sdk_by_room = {x.name: x for x in sdk}
    off: Live = live["off"]
    on: Live = live["on"]
    pulse = live["pulse"]
    sdk_s, daemon_s, pulse_s = live["seconds"]
    print()
    print("Live, counted by the simulator (its VAD: -40 dBFS, 60 ms to start, 600 ms hangover):")
    print()
    header = [
        "client in room",
        "agent speech",
        "self-interruptions / 10 min agent speech (count)",
        "self-answered turns / 10 min (count)",
        "user bursts heard",
        "barge-ins over agent speech detected",
        "echo at the simulator vs sent",
        "self-interruptions vs the SDK (same room)",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def row(label: str, x: Live, vs: Live | None) -> None:
        echo = "n/a" if x.echo is None or x.echo.seconds == 0 else f"{x.echo.db:.1f} dB"
        got, over = x.barge_ins
        barge = f"{got} of {over}" if over else "none spoken"
        ratio = (
            ""
            if vs is None
            else _ratio(x.per_10_min(x.own_interruptions), vs.per_10_min(vs.own_interruptions))
        )
        cells = [
            label,
            f"{x.agent_s:.0f} s of {x.end - x.start:.0f} s",
            _rate(x, x.own_interruptions),
            _rate(x, x.own_turns),
            f"{100 * x.heard:.0f} % of {len(x.bursts)}",
            barge,
            echo,
            ratio,
        ]
        print("| " + " | ".join(cells) + " |")
        if x.note:
            notes.append(f"{label}: {x.note}")

    notes: list[str] = []
    for x in sdk:
        row(f"official SDK, {x.name}", x, None)
    ref = sdk_by_room.get("small")
    row("voicebox run, small, processing off", off, ref)
    row("voicebox run, small, processing on", on, ref)
    if isinstance(pulse, str):
        print()
        print(f"**PulseAudio room row skipped: {pulse}**")
    else:
        for x in pulse:
            row(f"voicebox run, PulseAudio room (-6 dB, 50 ms), processing {x.name}", x, None)
    print()
    c = on.cpu
    per_min = c["processing_s"] / max(on.end - on.start, 1e-9) * 60
    share = c["processing_s"] / c["daemon_s"] if c["daemon_s"] > 0 else float("nan")
    print(
        f"The daemon measured from outside (`voicebox run` hands-free in the small room, "
        f"{on.end - on.start:.0f} s after its session opened; processing CPU seconds from "
        "`voicebox status --json`, the process's CPU and RSS from psutil):"
    )
    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(f"| processing CPU per minute (live daemon) | {per_min:.2f} s | |")
    print(f"| processing, share of one core | {per_min / 60 * 100:.2f} % | <= 1.5 % |")
    print(f"| processing, share of the daemon's CPU | {100 * share:.0f} % | |")
    daemon_min = c["daemon_s"] / max(on.end - on.start, 1e-9) * 60
    print(
        f"| daemon CPU per minute, whole process, processing on | {daemon_min:.2f} s "
        f"({daemon_min / 60 * 100:.1f} % of a core) | |"
    )
    print(f"| daemon RSS, processing on / off | {c['rss_mb']:.1f} / {off.cpu['rss_mb']:.1f} MB | |")
    added = c["rss_mb"] - off.cpu["rss_mb"]
    print(f"| RSS added, live daemon (on - off) | {added:+.1f} MB | <= 5 MB |")
    print(f"| the daemon's ERLE / echo delay (status) | {c['erle_db']} dB / {c['delay_ms']} ms | |")
    if not isinstance(pulse, str):
        pc = pulse[1].cpu
        wall = max(pulse[1].end - pulse[1].start, 1e-9)
        pshare = pc["processing_s"] / pc["daemon_s"] if pc["daemon_s"] > 0 else float("nan")
        print(
            f"| PulseAudio room: processing share of one core / of the daemon's CPU | "
            f"{100 * pc['processing_s'] / wall:.2f} % / {100 * pshare:.0f} % | |"
        )
        print(
            f"| PulseAudio room: the daemon's ERLE / echo delay (status) | "
            f"{pc['erle_db']} dB / {pc['delay_ms']} ms | |"
        )
    print()
    print(
        f"- Live runs: the official SDK {sdk_s:.0f} s per room (all rooms at once, one "
        f"simulator), the daemon {daemon_s:.0f} s per run, the PulseAudio room {pulse_s:.0f} s "
        "per run; per-10-minute figures are those counts extrapolated over the agent speech the "
        "simulator sent and had time to play (cut where interrupted)."
    )
    print(
        "- The SDK runs as its example does (Conversation: threads, a blocking WebSocket), with "
        "an AudioInterface written for the bench in place of DefaultAudioInterface: what the SDK "
        "hands output() plays into voicebox.audio.room's Room (the same impulse responses), the "
        "mic hears that room plus the user's bursts and goes to the SDK 250 ms at a time."
    )
    print(
        "- A self-interruption: the simulator cut a reply with no user burst in progress (or "
        f"ended less than {USER_SLACK_S:.1f} s before); a self-answered turn: a turn ending "
        f"with no user burst in the {TURN_SLACK_S:.1f} s before it; heard: a burst followed by "
        "an interruption or a turn; a barge-in: a burst begun while a reply played (at the "
        "simulator's reckoning), detected when the simulator cut that reply. Echo at the "
        "simulator: tests/audio/test_echo_pulse_e2e.py's measure, the user's bursts left out."
    )
    print(
        "- CPU figures are noisy: 2 shared cores, a niced soak in the background; the unprocessed "
        "daemon runs (simulated and PulseAudio room) ran alongside the SDK runs, so only their "
        "RSS and counts are used; the processing runs ran alone."
    )
    played = ", ".join(f"{x.name} {x.played_s:.0f} s" for x in sdk if x.played_s is not None)
    late = ", ".join(f"{x.name} {x.late}" for x in sdk)
    print(
        f"- Agent audio the SDK's speaker played in its room (a cross-check): {played}; 20 ms "
        f"periods its room's threads ran late (a loaded machine): {late}."
    )
    for note in notes:
        print(f"- {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (1 min per room)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    minutes = 1.0 if args.quick else 3.0
    rows, plotted = offline_rooms(minutes)
    rss_added = rss_added_mb()
    with tempfile.TemporaryDirectory(prefix="bench-echo-") as tmp:
        for run in LIVE_DIRS:
            (Path(tmp) / run).mkdir()
        live = asyncio.run(live_runs(args.quick, Path(tmp)))
    sdk_by_room = {x.name: x for x in live["sdk"]}
    print(
        "# Echo cancellation in simulated rooms (speexdsp's MDF, then WebRTC AEC3 via "
        "pywebrtc-audio, 16 kHz)"
    )
    print()
    header = [
        "room (delay, tail, echo, direct/tail)",
        "ERLE far end only",
        "self-interruptions / 10 min agent speech: off / on / official SDK (live)",
        "barge-ins detected: on (off)",
        f"barge-ins detected after the first {SETTLED_S:.0f} s",
        "AEC3 alone: self-interruptions / barge-ins",
        "processing CPU per minute",
        "share of one core",
        "status ERLE",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (
        room, erle, off_rate, on_rate, on_detect, off_detect, cpu, status_erle, alone_rate,
        alone_detect, on_settled,
    ) in rows:  # fmt: skip
        sdk = sdk_by_room.get(room.name)
        sdk_text = "n/a" if sdk is None else f"{sdk.per_10_min(sdk.own_interruptions):.0f}"
        cells = [
            f"{room.name} ({room.delay_ms:.0f} ms, {room.tail_ms:.0f} ms, "
            f"{room.echo_db:+.0f} dB, {_direct(room)})",
            f"{erle:.1f} dB",
            f"{off_rate:.0f} / {on_rate:.0f} / {sdk_text}",
            f"{100 * on_detect:.0f} % ({100 * off_detect:.0f} %)",
            f"{100 * on_settled:.0f} %",
            f"{alone_rate:.0f} / {100 * alone_detect:.0f} %",
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
    print(
        "- off / on: the mic and the processed mic through the simulator's VAD, offline; "
        "official SDK: the SDK itself live against the simulator in that room (below)."
    )
    print(
        f"- RSS added by the library and one processor in a fresh process (after a minute): "
        f"{rss_added:.1f} MB"
    )
    print("- CPU here: thread CPU time of CaptureProcessor.process (alignment, resampling, MDF,")
    print("  AEC3, NS, meters) over audio time; the live daemon's figures are below.")
    print("- AEC3 alone: the same processor with libspeexdsp taken away (what voicebox does")
    print("  where it is not installed).")
    print(f"- Plot of mic, reference and processed levels over one reply: {plotted}")
    print_live(live)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
