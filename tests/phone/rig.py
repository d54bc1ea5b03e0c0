"""The phone bridge wired to the convai simulator (the agent) and the Twilio fake (the caller)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.convai.rig import FAST, LogRecords
from voicebox.config import Config, Secret, with_changes
from voicebox.phone import context
from voicebox.phone.server import VOICE_PATH, PhoneServer, quiet_twilio_logs
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.twilio import FakeCall, TwilioFake
from voicebox.simulator.voice import speech_like

ACCOUNT = "AC" + "0" * 32
TOKEN = "fake-twilio-auth-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def phone_config(sim: Simulator, fake: TwilioFake, port: int, **changes: Any) -> Config:
    settings = {
        **FAST,
        "agent.api_base": sim.url,
        "phone.enabled": True,
        "phone.listen_port": port,
        "phone.public_url": f"http://127.0.0.1:{port}",
        "phone.account_sid": ACCOUNT,
        "phone.from_number": "+15550100002",
        "phone.api_base": fake.api_base,
        "phone.give_up_s": 3.0,
        "tts.timeout_s": 2.0,
        **changes,
    }
    settings.pop("conversation.mode", None)
    cfg: Config = with_changes(Config(), **settings)
    return cfg


class PhoneRig:
    def __init__(
        self, sim: Simulator, fake: TwilioFake, server: PhoneServer, logs: LogRecords
    ) -> None:
        self.sim = sim
        self.fake = fake
        self.server = server
        self.logs = logs

    @property
    def voice_url(self) -> str:
        return self.server.public(VOICE_PATH)

    async def call(self) -> FakeCall:
        return await self.fake.incoming_call(self.voice_url)

    @staticmethod
    def say(call: FakeCall, seconds: float) -> float:
        """The caller speaks `seconds` (then 1 s of the hangover is silence on the line)."""
        return call.say(speech_like(seconds, 8000))


@asynccontextmanager
async def phone_rig(sim_config: SimConfig | None = None, **changes: Any) -> AsyncIterator[PhoneRig]:
    handler = LogRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    handler.addFilter(context.CallFields())
    old = root.level
    root.setLevel(logging.INFO)
    quiet_twilio_logs()
    sim = Simulator(
        sim_config
        or SimConfig(output_format="ulaw_8000", input_format="ulaw_8000", ping_interval_s=1.0)
    )
    await sim.start()
    fake = TwilioFake(ACCOUNT, TOKEN)
    await fake.start()
    cfg = phone_config(sim, fake, free_port(), **changes)
    server = PhoneServer(cfg, Secret(TOKEN), None)
    await server.start()
    rig = PhoneRig(sim, fake, server, handler)
    try:
        yield rig
    finally:
        await server.stop()
        await fake.stop()
        await sim.stop()
        root.removeHandler(handler)
        root.setLevel(old)
        # No call and no session is ever left open.
        assert not server.calls, f"calls left open: {list(server.calls)}"
        assert all(not c.live for c in sim.connections), "a convai session was left open"
        assert all(c.stopped.is_set() for c in fake.calls.values()), "a Twilio call left open"
