"""`make demo`: the daemon against the bundled simulator, hands-free in a simulated room.

Starts the simulator on 127.0.0.1 (a 1012 close on the first connection, a short duration cap),
generates a speech-like input WAV, runs `voicebox run` on it for about 30 s with the mic in a
simulated room (audio.input.backend: room: the speaker's output comes back at -6 dB after 40 ms,
with a 250 ms tail), and prints one line per event: session opened, turns, a barge-in by voice,
the 1012 reconnect, the duration-cap restart with context carried over, the clean shutdown. The
checks say whether the agent ever heard itself. Then where the output WAV is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import wave
from pathlib import Path

from voicebox.simulator.faults import parse_fault
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.voice import silence, speech_like

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "demo-out"
RATE = 16000
RUN_S = 27.0
DEMO_KEY = "demo-key-not-secret"  # the simulator's TTS endpoint wants a key, like the service
# (start s, length s) of each utterance in the input WAV, timed against the simulator's replies:
# the second one starts while the agent answers the first (a barge-in).
UTTERANCES = ((2.6, 1.3), (5.0, 1.3), (9.6, 1.3), (13.6, 1.3), (20.0, 1.3))
INTERESTING = (
    "daemon.",
    "session.",
    "reconnect.",
    "state ",
    "announcement",
    "barge_in",
    "interrupt",
    "tuning.changed",
    "sim.turn",
    "sim.interruption",
    "sim.fault",
    "sim.max_duration",
    "sim.contextual_update",
    "sim.connection.closed",
    "audio.processing",
)


def write_input(path: Path) -> float:
    total = UTTERANCES[-1][0] + UTTERANCES[-1][1] + 6.0
    signal_ = silence(total, RATE).copy()
    for i, (start, length) in enumerate(UTTERANCES):
        voiced = speech_like(length, RATE, f0=120.0 + 15 * i)
        at = int(start * RATE)
        signal_[at : at + len(voiced)] = voiced
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(signal_.astype("<i2").tobytes())
    return total


def write_config(path: Path, api_base: str) -> None:
    path.write_text(
        f"""# written by scripts/demo.py
agent:
  agent_id: demo-agent
  api_base: {api_base}
  overrides:
    first_message: Hello, I am the voicebox demo agent. What can I do for you?
audio:
  input:
    backend: room
    path: {OUT / "input.wav"}
    room: {{delay_ms: 40, tail_ms: 250, echo_db: -6, noise_dbfs: -65}}
  output: {{backend: file, path: {OUT / "output.wav"}}}
  processing: {{echo_cancellation: on, noise_suppression: moderate}}
conversation:
  mode: always_on
  reconnect: {{initial_s: 0.5}}
gpio:
  button: {{pin: null}}
monitor:
  health_interval_s: 0
paths:
  state_dir: {OUT / "state"}
  runtime_dir: {OUT / "run"}
""",
        encoding="utf-8",
    )


class _Printer(logging.Handler):
    def __init__(self, t0: float) -> None:
        super().__init__()
        self.t0 = t0

    def emit(self, record: logging.LogRecord) -> None:
        show(self.t0, "simulator", record.getMessage())


def _field(line: str, key: str) -> float | None:
    for part in line.split():
        name, _, value = part.partition("=")
        if name == key:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def show(t0: float, who: str, line: str) -> None:
    if any(key in line for key in INTERESTING):
        print(f"{time.monotonic() - t0:6.1f}s  {who:<9}  {line}", flush=True)


async def main() -> int:
    OUT.mkdir(exist_ok=True)
    for stale in ("output.wav",):
        with contextlib.suppress(FileNotFoundError):
            (OUT / stale).unlink()
    write_input(OUT / "input.wav")
    t0 = time.monotonic()
    sim_log = logging.getLogger("voicebox.simulator")
    sim_log.addHandler(_Printer(t0))
    sim_log.setLevel(logging.INFO)
    sim_log.propagate = False
    sim = Simulator(
        SimConfig(
            api_key=DEMO_KEY,
            max_duration_s=11.0,
            faults=(parse_fault("1:close:1012:7"),),
            voice_harmonics=20,  # the agent's voice as wide as a voice (to ~3.6 kHz)
        )
    )
    await sim.start()
    write_config(OUT / "config.yaml", sim.url)
    print(f"voicebox demo: simulator at {sim.url}, config {OUT / 'config.yaml'}\n", flush=True)
    env = dict(os.environ, ELEVENLABS_API_KEY=DEMO_KEY, PYTHONUNBUFFERED="1")
    env.pop("JOURNAL_STREAM", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicebox",
        "run",
        "--config",
        str(OUT / "config.yaml"),
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    seen: list[str] = []

    async def pump() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            seen.append(line)
            _, _, message = line.partition(": ")
            show(t0, "voicebox", message or line)

    reader = asyncio.create_task(pump())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), RUN_S)
    if proc.returncode is None:
        show(t0, "demo", "daemon.sigterm (systemctl stop)")
        proc.send_signal(signal.SIGTERM)
    rc = await proc.wait()
    await reader
    await sim.stop()
    text = "\n".join(seen)
    turns = [d for c in sim.connections for d in c.turns]
    interruptions = sum(len(c.interruptions) for c in sim.connections)
    summary = next((line for line in seen if "audio.processing_summary" in line), "")
    erle = _field(summary, "erle_db")
    checks = {
        "session opened": "session.opened" in text,
        "turns answered": any(c.turns for c in sim.connections),
        "barge-in by voice (interruption)": interruptions >= 1,
        "hands-free: the agent never heard itself (each turn is one of the user's)": (
            0 < len(turns) <= len(UTTERANCES)
            and all(0.9 <= d <= 1.9 for d in turns)
            and interruptions <= len(UTTERANCES)
        ),
        f"echo cancelled in the room (ERLE {erle} dB >= 20)": erle is not None and erle >= 20,
        "1012 close -> reconnect": "close_code=1012" in text and "class=transient" in text,
        "duration cap -> new session, context carried": "class=duration_cap" in text
        and any(c.contextual_updates for c in sim.connections[1:]),
        "clean shutdown (exit 0)": rc == 0 and "daemon.stopped" in text,
        "API key never logged": DEMO_KEY not in text,
    }
    print()
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSING'}] {name}")
    out = OUT / "output.wav"
    if out.exists():
        with wave.open(str(out)) as w:
            secs = w.getnframes() / w.getframerate()
        print(f"\noutput WAV: {out} ({secs:.1f} s, what the speaker would have played)")
    print(f"input WAV:  {OUT / 'input.wav'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
