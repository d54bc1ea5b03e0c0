"""`make demo-wake`: hands-free with a local wake word, against the bundled simulator.

espeak-ng says "Okay nabu" and a question, twice, into a WAV; `voicebox run` (conversation.mode:
wake_word, the mic in a simulated room with echo, echo cancellation on) listens for the word
locally, opens a session on each wake, sends the question that follows it (not the word), and
closes after conversation.idle_close_s without speech, back to listening. One line per event,
then checks: two wakes, two sessions, each question answered, each closed idle, the key never
logged, a clean exit.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

from voicebox.audio.resample import convert
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.voice import silence

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "demo-out" / "wake"
RATE = 16000
DEMO_KEY = "demo-key-not-secret"  # the simulator wants a key, like the service
INTERESTING = ("wake.", "chime", "session.opened", "session.idle", "session.closed", "sim.turn")


def say(text: str) -> np.ndarray:
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "140", "--stdout", text],
        capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    with wave.open(io.BytesIO(out)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)
        return convert(pcm, w.getframerate(), RATE)


def write_input(path: Path) -> float:
    wake = say("Okay nabu")
    parts = [silence(1.5, RATE), wake, silence(0.15, RATE), say("What is the weather like today?")]
    parts += [silence(9.0, RATE), wake, silence(0.15, RATE), say("And what about tomorrow?")]
    parts.append(silence(8.0, RATE))
    audio = np.concatenate(parts)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.astype("<i2").tobytes())
    return len(audio) / RATE


def write_config(path: Path, api_base: str) -> None:
    path.write_text(
        f"""# written by scripts/demo_wake.py
agent:
  agent_id: demo-agent
  api_base: {api_base}
audio:
  input:
    backend: room
    path: {OUT / "input.wav"}
    room: {{delay_ms: 40, tail_ms: 250, echo_db: -6, noise_dbfs: -65}}
  output: {{backend: file, path: {OUT / "output.wav"}}}
  processing: {{echo_cancellation: "on", noise_suppression: moderate}}
conversation:
  mode: wake_word
  idle_close_s: 3.0
wake:
  model: okay_nabu
announcements:
  enabled: false
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


def show(t0: float, who: str, line: str) -> None:
    print(f"{time.monotonic() - t0:6.1f}s  {who:<9}  {line}", flush=True)


class _Printer(logging.Handler):
    def __init__(self, t0: float) -> None:
        super().__init__()
        self.t0 = t0

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if any(key in line for key in INTERESTING):
            show(self.t0, "simulator", line)


async def main() -> int:
    if shutil.which("espeak-ng") is None:
        print("demo-wake: espeak-ng is missing (scripts/bootstrap.sh installs it)", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    run_s = write_input(OUT / "input.wav")
    t0 = time.monotonic()
    sim_log = logging.getLogger("voicebox.simulator")
    sim_log.addHandler(_Printer(t0))
    sim_log.setLevel(logging.INFO)
    sim_log.propagate = False
    # A wake-word agent has no first message: the chime greets, and a greeting would talk over
    # the question said right after the word.
    sim = Simulator(SimConfig(api_key=DEMO_KEY, first_message=""))
    await sim.start()
    write_config(OUT / "config.yaml", sim.url)
    print(f"voicebox demo-wake: simulator at {sim.url}, config {OUT / 'config.yaml'}\n")
    env = dict(os.environ, ELEVENLABS_API_KEY=DEMO_KEY, PYTHONUNBUFFERED="1")
    env.pop("JOURNAL_STREAM", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebox", "run", "--config", str(OUT / "config.yaml"),
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    seen: list[str] = []

    async def pump() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            seen.append(line)
            _, _, message = line.partition(": ")
            if any(key in message for key in (*INTERESTING, "daemon.", "state ")):
                show(t0, "voicebox", message)

    reader = asyncio.create_task(pump())
    await asyncio.sleep(run_s + 1.0)
    proc.send_signal(signal.SIGTERM)
    rc = await proc.wait()
    await reader
    await sim.stop()
    text = "\n".join(seen)
    conns = sim.connections
    durations = [[round(d, 2) for d in c.turns] for c in conns]
    print(f"\nturns the simulator heard (s), per session: {durations}")
    checks = {
        "two wakes, each opened a session": text.count("outcome=opened") == 2 and len(conns) == 2,
        "each question answered": all(c.turns for c in conns) and len(conns) == 2,
        "each closed after the idle time": text.count("session.idle") == 2,
        "back to listening locally after each": text.count("wake.listening") == 3,
        "clean shutdown (exit 0)": rc == 0 and "daemon.stopped" in text,
        "API key never logged": DEMO_KEY not in text,
    }
    print()
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSING'}] {name}")
    print(f"\ninput WAV:  {OUT / 'input.wav'}\noutput WAV: {OUT / 'output.wav'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
