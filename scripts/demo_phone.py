"""`make demo-phone`: one simulated phone call through `voicebox phone`, printed event by event.

Runs the convai simulator (the agent, ulaw_8000, ends the call after 3 turns) and the loopback
Twilio fake (the caller and Twilio's REST API), starts `voicebox phone` as its own process against
them, and places one incoming call: the greeting, a turn, a barge-in over the agent's answer
(Twilio is sent `clear`), another turn, then the agent's end_call: the goodbye played out to its
last mark and the call completed over REST, which is the last line printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402
from voicebox.simulator.twilio import FakeCall, TwilioFake  # noqa: E402
from voicebox.simulator.voice import speech_like  # noqa: E402

ACCOUNT = "AC" + "d" * 32
TOKEN = "demo-twilio-token-not-secret"
SHOWN = (
    "phone.",
    "call.",
    "rest.",
    "stream.",
    "session.",
    "agent.",
    "reconnect.",
    "webhook.",
    "sim.turn",
    "sim.reply",
    "sim.interruption",
    "sim.end_call",
)
T0 = time.monotonic()


def show(source: str, text: str) -> None:
    print(f"{time.monotonic() - T0:6.2f}s  {source:<7} {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def follow(stream: asyncio.StreamReader, listening: asyncio.Event) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        if "phone.listening" in text:
            listening.set()
        message = text.split(": ", 1)[-1]
        if message.startswith(SHOWN):
            show("phone", message)


async def quiet(fake: TwilioFake, call: FakeCall) -> None:
    """Until neither side has talked for a moment."""
    await fake.wait_for(
        lambda: not call.speaking and call.heard and call.heard[-1][0] < time.monotonic() - 0.5,
        30,
    )


class AgentLog(logging.Handler):
    """The simulator's (the agent's) events, printed as they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(SHOWN):
            show("agent", message)


async def talk(call: FakeCall, seconds: float) -> None:
    show("caller", f"speaks for {seconds:.1f} s")
    call.say(speech_like(seconds, 8000))


async def main() -> int:
    logging.getLogger("voicebox.simulator").addHandler(AgentLog())
    logging.getLogger("voicebox.simulator").setLevel(logging.INFO)
    sim = Simulator(
        SimConfig(output_format="ulaw_8000", input_format="ulaw_8000", end_call_after_turns=3)
    )
    await sim.start()
    fake = TwilioFake(ACCOUNT, TOKEN)
    await fake.start()
    fake.on_event = lambda text: show("twilio", text)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(
            f"agent:\n  agent_id: demo\n  api_base: {sim.url}\n"
            f"phone:\n  enabled: true\n  listen_port: {port}\n"
            f"  public_url: http://127.0.0.1:{port}\n  account_sid: {ACCOUNT}\n"
            f"  api_base: {fake.api_base}\n"
            f"paths:\n  state_dir: {tmp}/state\n  runtime_dir: {tmp}\n"
        )
        env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "RUNTIME_DIRECTORY": tmp}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "phone", "--config", str(cfg),
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        listening = asyncio.Event()
        follower = asyncio.create_task(follow(proc.stderr, listening))
        try:
            await asyncio.wait_for(listening.wait(), 30)
            show("caller", "dials in")
            call = await fake.incoming_call(f"http://127.0.0.1:{port}/twilio/voice")
            await fake.wait_for(lambda: call.heard_s() > 0.5, 20)
            show("caller", "hears the greeting")
            await quiet(fake, call)
            await talk(call, 1.3)
            conn = sim.connection(1)
            await fake.wait_for(lambda: len(conn.agent_responses) >= 2, 20)
            await fake.wait_for(lambda: call.heard_s(after=time.monotonic() - 0.2) > 0, 20)
            await asyncio.sleep(0.4)
            await talk(call, 1.3)  # over the agent's answer: a barge-in
            await fake.wait_for(lambda: call.clears, 20)
            await fake.wait_for(lambda: len(conn.turns) >= 2 and len(conn.agent_responses) >= 3)
            await quiet(fake, call)
            await talk(call, 1.3)  # the third turn: the agent answers, says goodbye, hangs up
            await asyncio.wait_for(call.stopped.wait(), 40)
            await asyncio.sleep(0.3)
        finally:
            if proc.returncode is None:
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 20)
            await asyncio.wait_for(follower, 5)
            await fake.stop()
            await sim.stop()
    if call.completed_by_rest_at is None or not call.marks_echoed:
        show("demo", "FAILED: the call was not completed over REST")
        return 1
    gap_ms = (call.completed_by_rest_at - call.marks_echoed[-1][1]) * 1000
    method, path, status = [r for r in fake.rest_log if "/Calls/" in r[1]][-1]
    show(
        "twilio",
        f"REST {method} {path} Status=completed -> {status}, "
        f"{gap_ms:.0f} ms after the goodbye's last mark ({call.marks_echoed[-1][0]})",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
