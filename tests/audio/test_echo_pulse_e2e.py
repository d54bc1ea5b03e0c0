"""Hands-free through a real sound server: `voicebox run` on its sounddevice backend in a private
PulseAudio room (tests/audio/pulse_room.py: the speaker looped into the microphone, 50 ms at
-6 dB), against the simulator, measured at the simulator: the agent's voice in what it received
while the agent spoke, in dB relative to what it sent.

With echo cancellation off the agent's own voice arrives near -6 dB and the agent interrupts
itself (the control: the room is real); with it on, the echo should be many dB lower, nothing
should interrupt the agent, and the user's voice (paplay into the microphone's sink) must still
arrive; each prints its figures (`-s`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.audio import pulse_room as pa
from voicebox.audio.echo.processor import library_available
from voicebox.simulator.server import SimConfig, SimConnection, Simulator
from voicebox.simulator.voice import speech_like

pytestmark = pytest.mark.slow
RATE = 16000  # the wire format both ways (pcm_16000)
FIRST = "Hello, I am the agent in a room with a real sound server, talking for a while."
TAIL_S = 0.8  # how long after a reply's playout its echo can still arrive at the simulator
MAX_LAG_S = 0.4  # the longest echo delay looked for (playout start to arrival)
SPREAD_S = 0.15  # the window around the echo's expected arrival counted as echo
GUARD_S = 30.0


@pytest.fixture
def room(tmp_path: Path) -> Iterator[pa.PulseRoom]:
    why = pa.missing()
    if why is not None:
        pytest.fail(why, pytrace=False)  # bootstrap installs it: not having it is a defect
    with pa.pulse_room(tmp_path / "pulseaudio.log") as r:
        yield r


@dataclass
class Timeline:
    """What the simulator received and what of the agent's voice it sent, on one clock (the
    simulator's, at RATE); sent is the voice as it played (each reply from its playout start, cut
    where an interruption cut it).

    The received chunks are laid end to end, except where the daemon sent nothing for a while (a
    device reopened by the tuner on a loaded machine loses 100-500 ms of mic) or sent a backlog
    at once (the mic before the session was up): there the floor of how late chunks arrived,
    over the next second, moves, and the chunks move with it. (Laid end to end from the first
    chunk, a 160 ms gap once put the user's turn into a reply's window as -23 dB of echo.)"""

    received: npt.NDArray[np.float64]
    sent: npt.NDArray[np.float64]
    voiced: npt.NDArray[np.bool_]  # where a reply was playing

    @classmethod
    def of(cls, conn: SimConnection, replies: slice = slice(None)) -> Timeline:
        chunks = [np.frombuffer(d, dtype="<i2") for _, d in conn.received_audio]
        arrived = np.array([t for t, _ in conn.received_audio])
        ends = np.cumsum([len(c) for c in chunks])  # laid end to end
        late = (arrived - arrived[0]) * RATE + len(chunks[0]) - ends  # samples, 0 for the first
        floor = np.array([late[k : np.searchsorted(arrived, t + 1.0)].min()
                          for k, t in enumerate(arrived)])  # fmt: skip
        ends = np.round(ends + floor).astype(int)
        shift = max(0, -int((ends - [len(c) for c in chunks]).min()))
        ends += shift
        base = arrived[0] - (len(chunks[0]) + shift) / RATE  # the clock time of sample 0
        received = np.zeros(int(ends.max()))
        for end, chunk in zip(ends, chunks, strict=True):
            received[end - len(chunk) : end] = chunk
        sent = np.zeros(len(received))
        voiced = np.zeros(len(received), dtype=bool)
        for reply in conn.sent_replies[replies]:
            pcm = np.frombuffer(reply.pcm, dtype="<i2").astype(np.float64)
            if reply.played_s is not None:
                pcm = pcm[: round(reply.played_s * RATE)]
            at = round((reply.start - base) * RATE)
            lo, hi = max(0, at), min(len(received), at + len(pcm))
            if lo < hi:
                sent[lo:hi] = pcm[lo - at : hi - at]
                voiced[lo:hi] = True
        return cls(received, sent, voiced)

    def lag(self) -> int:
        """The echo's delay in samples (within MAX_LAG_S): where the correlation peaks."""
        n = len(self.received) + len(self.sent)
        spec = np.fft.rfft(self.received, n) * np.conj(np.fft.rfft(self.sent, n))
        corr = np.fft.irfft(spec, n)[: round(MAX_LAG_S * RATE)]
        return int(np.argmax(corr))

    def echo(self, lag: int, spread_s: float = SPREAD_S) -> Echo:
        """Received energy where the voice's echo lands (`lag` later, widened by spread_s each
        side) over the energy of the voice whose echo lands within what was received."""
        n, spread = len(self.received), round(spread_s * RATE)
        source = self.voiced.copy()
        source[max(0, n - lag) :] = False  # its echo would land after the last chunk
        landing = np.zeros(n, dtype=bool)
        idx = np.flatnonzero(source) + lag
        if len(idx) == 0:
            return Echo(math.nan, 0.0, lag, 0.0)
        landing[idx] = True
        count = np.concatenate(([0], np.cumsum(landing)))
        i = np.arange(n)
        widened = count[np.minimum(n, i + spread + 1)] - count[np.maximum(0, i - spread)] > 0
        voice, heard = self.sent[source], self.received[idx]
        sent_e, exact_e = float(np.dot(voice, voice)), float(np.dot(heard, heard))
        recv_e = float(np.dot(self.received[widened], self.received[widened]))
        corr = float(np.dot(voice, heard)) / math.sqrt(sent_e * exact_e) if exact_e else 0.0
        return Echo(10 * math.log10(max(recv_e, 1.0) / sent_e), len(idx) / RATE, lag, corr)


@dataclass
class Echo:
    """The agent's voice in what the simulator received, in dB relative to what it sent."""

    db: float
    seconds: float  # agent speech measured
    lag: int  # samples
    correlation: float  # of the voice with what arrived `lag` later

    def __str__(self) -> str:
        return (
            f"{self.db:.1f} dB over {self.seconds:.1f} s of agent speech "
            f"(delay {1000 * self.lag / RATE:.0f} ms, correlation {self.correlation:.2f})"
        )


def _config(tmp: Path, api_base: str, processing: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: agent_pulse_room
  api_base: {api_base}
audio:
  input: {{backend: sounddevice, device: default}}
  output: {{backend: sounddevice, device: default}}
  processing: {{{processing}}}
conversation:
  mode: always_on
gpio:
  button: {{pin: null}}
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
"""
    )
    return path


@dataclass
class Run:
    sim: Simulator
    conn: SimConnection
    room: pa.PulseRoom
    proc: asyncio.subprocess.Process
    lines: list[str]
    tmp: Path

    async def until(self, cond: object, timeout: float = GUARD_S) -> None:
        await self.sim.wait_for(cond, timeout=timeout)  # type: ignore[arg-type]

    async def status(self) -> dict[str, object]:
        """The daemon's own figures (`voicebox status --json`)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "status", "--json", "--socket",
            str(self.tmp / "run" / "status.sock"), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        snap: dict[str, object] = json.loads(out)
        return snap

    async def agent_done(self, n: int) -> None:
        """Until reply n (1-based) has been sent and had time to play out."""
        await self.until(lambda: len(self.conn.agent_responses) >= n)
        reply = self.conn.sent_replies[n - 1]
        loop = asyncio.get_running_loop()
        while True:
            cut = reply.played_s
            end = reply.start + (len(reply.pcm) / 2 / RATE if cut is None else cut) + TAIL_S
            if loop.time() >= end:
                return
            await asyncio.sleep(min(0.2, end - loop.time()))


@contextlib.asynccontextmanager
async def voicebox_in_room(tmp: Path, room: pa.PulseRoom, processing: str) -> AsyncIterator[Run]:
    sim = Simulator(
        SimConfig(
            first_message=FIRST,
            ping_interval_s=0.5,
            reply_delay_s=0.1,
            voice_harmonics=20,  # as wide as a voice (see test_echo_room_e2e)
            record_audio=True,
        )
    )
    await sim.start()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **room.client_env()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "run", "--config",
        str(_config(tmp, sim.url, processing)),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    lines: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read_log())
    try:
        conn = await sim.wait_connection(1, timeout=GUARD_S)
        yield Run(sim, conn, room, proc, lines, tmp)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), GUARD_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await reader
        await sim.stop()
    log = "\n".join(lines)
    assert "Traceback" not in log, log
    assert proc.returncode == 0, log


def report(name: str, text: str) -> None:
    """One visible line with the figures (pytest -s), and the same in the test's report."""
    print(f"\n[pulse room] {name}: {text}", file=sys.__stdout__, flush=True)


def _need_library() -> None:
    if not library_available():
        pytest.fail("pywebrtc-audio is not installed (make bootstrap installs it)", pytrace=False)


@pytest.mark.asyncio
async def test_pulse_room_unprocessed_the_agent_hears_itself_at_minus_6_db(
    tmp_path: Path, room: pa.PulseRoom
) -> None:
    """The control (the mic as it is, no processing at all): the agent's voice reaches the
    simulator at about the room's -6 dB, and the simulator takes it for the user: the agent
    interrupts itself and answers itself."""
    _need_library()
    unprocessed = "echo_cancellation: off, noise_suppression: off, high_pass: false"
    async with voicebox_in_room(tmp_path, room, unprocessed) as r:
        await r.until(lambda: len(r.conn.agent_responses) >= 3)
        await r.agent_done(3)
    heard = Timeline.of(r.conn)
    off = heard.echo(heard.lag())
    report(
        "echo_cancellation off",
        f"{off}; interruptions {len(r.conn.interruptions)}, "
        f"self-answered turns {len(r.conn.turns)}",
    )
    assert r.conn.interruptions or r.conn.turns
    # (each reply lands a few ms off the others, so the sample correlation is far below 1)
    assert off.correlation > 0.2 and -10.0 <= off.db <= -3.0, off


@pytest.mark.asyncio
async def test_pulse_room_echo_cancelled_no_self_interruption_and_user_heard(
    tmp_path: Path, room: pa.PulseRoom
) -> None:
    """The shipped processing in the same room: the greeting plays out whole; the user speaks
    twice in pauses and each is heard as one turn, answered, and the answers play out whole and
    are not answered again; the agent's voice arrives at least 20 dB below the room's -6."""
    _need_library()
    user = speech_like(1.2, RATE, f0=120.0, level=0.4)
    async with voicebox_in_room(tmp_path, room, "echo_cancellation: on") as r:
        await r.agent_done(1)
        greeting = (len(r.conn.interruptions), len(r.conn.turns))
        await asyncio.sleep(0.8)
        start = len(r.conn.agent_responses)
        for n in (1, 2):
            # the user is not in the window the echo is measured in: past a reply's end by more
            # than the longest lag and the spread (with no echo left to find, the lag found can
            # be anything up to MAX_LAG_S, and the user's onset once came out as -22 dB of echo)
            await asyncio.sleep(MAX_LAG_S + SPREAD_S + 0.2)
            await asyncio.get_running_loop().run_in_executor(None, r.room.say(user).wait)
            # a turn as long as the user spoke (not a blip of echo), and its answer played
            with contextlib.suppress(TimeoutError):
                await r.until(lambda n=n: sum(d >= 0.6 for d in r.conn.turns) >= n, 8.0)
            with contextlib.suppress(TimeoutError):  # the answer to this turn has been sent
                await r.until(lambda n=n: len(r.conn.agent_responses) >= start + n, 8.0)
            await r.agent_done(len(r.conn.agent_responses))
        await asyncio.sleep(1.0)  # nothing answers the last reply
        daemon = await r.status()
    heard = Timeline.of(r.conn)
    lag = heard.lag()  # the delay is found from the greeting's leak, or near the room's
    on = Timeline.of(r.conn, slice(start, None)).echo(lag)
    audio = daemon["audio"]
    assert isinstance(audio, dict)
    report(
        "echo_cancellation on",
        f"{on} after the greeting; {heard.echo(lag).db:.1f} dB in all "
        f"(the greeting's first second included); greeting: interruptions {greeting[0]}; "
        f"in all: interruptions {len(r.conn.interruptions)}, turns {r.conn.turns}, "
        f"replies {len(r.conn.agent_responses)}; the daemon's ERLE {audio.get('erle_db')} dB, "
        f"delay {audio.get('echo_delay_ms')} ms, double talk {audio.get('echo_double_talk_s')} s",
    )
    happened = (r.conn.interruptions, r.conn.turns, r.conn.agent_responses)
    user_turns = [d for d in r.conn.turns if d >= 0.6]
    assert len(user_turns) == 2 and all(d <= 2.0 for d in user_turns), happened  # user heard
    assert r.conn.interruptions == [] and len(r.conn.turns) == 2, happened
    assert len(r.conn.agent_responses) == 3, happened
    assert on.db <= -26.0, on
